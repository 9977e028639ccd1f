// Command demo is `make demo`: it builds what is missing, starts a 2-node
// lab with nftproxy on every node, creates example Services, sends
// traffic from a pod and from an external client (to a NodePort and a
// load balancer IP), prints who answered and a node's ruleset, and
// leaves the lab running for exploring. `demo down` (make demo-down)
// stops it by PID and deletes its namespaces.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/nftproxy/nftproxy/e2e/lab"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// defaultPrefix keeps the demo apart from e2e labs ("nftlab-"), so running the
// tests does not tear down a demo and vice versa.
const defaultPrefix = "nftdemo-"

func main() {
	mode := flag.String("mode", string(lab.Routed), "cross-node network: routed or vxlan")
	nodes := flag.Int("nodes", 2, "number of nodes")
	labPrefix := flag.String("prefix", defaultPrefix, "the lab's prefix; with down: the lab to stop (e.g. the leftovers of a killed test run, nftlab-<pid>-)")
	flag.Parse()
	var err error
	switch flag.Arg(0) {
	case "":
		err = demo(lab.Mode(*mode), *nodes, *labPrefix)
	case "down":
		if err = lab.Down(*labPrefix); err == nil {
			fmt.Printf("lab %s stopped, namespaces deleted\n", *labPrefix)
		}
	default:
		err = fmt.Errorf("unknown command %q (want no argument, or down)", flag.Arg(0))
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

func demo(mode lab.Mode, nodes int, prefix string) (err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	l, err := lab.Start(ctx, lab.Options{Prefix: prefix, Nodes: nodes, Mode: mode, KeepWorkDir: true, Log: os.Stdout})
	if err != nil {
		return err
	}
	// On failure tear everything down; on success leave it running.
	defer func() {
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s\n", l.Dump())
			err = errors.Join(err, l.Stop())
		}
	}()
	if _, err := l.CreateDeployment(ctx, "client", 1, "node-1"); err != nil {
		return err
	}
	var backends []string
	for _, n := range l.Nodes()[1:] {
		backends = append(backends, n.Name)
	}
	if _, err := l.CreateDeployment(ctx, "hello", 2*len(backends), backends...); err != nil {
		return err
	}
	svc, err := l.CreateService(ctx, lab.ServiceFor("hello", "hello", true))
	if err != nil {
		return err
	}
	if err := l.WaitForEndpoints(ctx, "hello", 2*len(backends)); err != nil {
		return err
	}
	fmt.Printf("\nService default/hello: ClusterIPs %s, backends %s on %s\n",
		strings.Join(svc.Spec.ClusterIPs, ", "), strings.Join(l.PodsOf("hello"), ", "), strings.Join(backends, ", "))
	for _, ip := range svc.Spec.ClusterIPs {
		dst := netip.AddrPortFrom(netip.MustParseAddr(ip), lab.SvcPort)
		if err := sendTraffic(l, "client-0", "client-0 (node-1)", dst, dst, ""); err != nil {
			return err
		}
	}
	if err := external(ctx, l); err != nil {
		return err
	}
	rules, err := l.NodeRules("node-1")
	if err != nil {
		return err
	}
	fmt.Printf("\nnode-1: nft list ruleset\n%s\n", rules)
	l.Detach()
	kc, _ := l.AdminKubeconfig()
	fmt.Printf("kubectl: ip netns exec %scp %s --kubeconfig %s get endpointslices (logs: %s/logs)\n",
		prefix, l.Binaries().Kubectl, kc, l.WorkDirPath())
	stop := "make demo-down"
	if prefix != defaultPrefix {
		stop = "go run ./e2e/demo -prefix " + prefix + " down"
	}
	fmt.Printf("Lab left running. Stop it: %s | look inside a node: ip netns exec %snode-1 nft list ruleset\n", stop, prefix)
	return nil
}

// lbIP is the demo's load balancer IP: outside every lab network, so
// only the route external() gives the external client leads there.
var lbIP = netip.MustParseAddr("10.200.0.10")

// external exposes hello outside the cluster: a NodePort Service and a
// LoadBalancer Service whose ingress IP is set through the status
// subresource (as a load balancer controller would) and routed to node-1
// by the external client, then sends traffic from the external client.
func external(ctx context.Context, l *lab.Lab) error {
	np := lab.ServiceFor("hello-np", "hello", false)
	np.Spec.Type = corev1.ServiceTypeNodePort
	npSvc, err := l.CreateService(ctx, np)
	if err != nil {
		return err
	}
	lb := lab.ServiceFor("hello-lb", "hello", false)
	lb.Spec.Type = corev1.ServiceTypeLoadBalancer
	if _, err := l.CreateService(ctx, lb); err != nil {
		return err
	}
	lbSvc, err := setIngress(ctx, l, "hello-lb", lbIP)
	if err != nil {
		return err
	}
	node1 := l.Node("node-1")
	ext, err := l.NS(lab.External1)
	if err != nil {
		return err
	}
	if err := ext.AddRoute(netip.PrefixFrom(lbIP, 32), node1.IPv4); err != nil {
		return err
	}
	client := fmt.Sprintf("%s (external, %s)", lab.External1, lab.ExternalIP(lab.External1, false))
	tcp, udp := nodePorts(npSvc)
	fmt.Printf("\nService default/hello-np: NodePort, tcp %d and udp %d on every node\n", tcp, udp)
	for _, n := range l.Nodes() {
		if err := sendTraffic(l, lab.External1, client, netip.AddrPortFrom(n.IPv4, tcp), netip.AddrPortFrom(n.IPv4, udp), " ("+n.Name+")"); err != nil {
			return err
		}
	}
	fmt.Printf("\nService default/hello-lb: LoadBalancer, status.loadBalancer.ingress %s (%s routes it via %s)\n",
		lbSvc.Status.LoadBalancer.Ingress[0].IP, lab.External1, node1.Name)
	dst := netip.AddrPortFrom(lbIP, lab.SvcPort)
	return sendTraffic(l, lab.External1, client, dst, dst, " (load balancer IP)")
}

// setIngress writes status.loadBalancer.ingress of Service default/name.
func setIngress(ctx context.Context, l *lab.Lab, name string, ip netip.Addr) (*corev1.Service, error) {
	svcs := l.Client().CoreV1().Services("default")
	cur, err := svcs.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	cur.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip.String()}}
	out, err := svcs.UpdateStatus(ctx, cur, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("set ingress of %s: %w", name, err)
	}
	return out, nil
}

// nodePorts returns the nodePorts of ServiceFor's tcp and udp ports.
func nodePorts(svc *corev1.Service) (tcp, udp uint16) {
	for _, p := range svc.Spec.Ports {
		switch p.Name {
		case "tcp":
			tcp = uint16(p.NodePort)
		case "udp":
			udp = uint16(p.NodePort)
		}
	}
	return tcp, udp
}

// sendTraffic dials tcp 8 times over TCP and udp once over UDP from the
// lab member from and prints who answered and the source it saw. toDesc
// (may be empty) follows the destination in the heading.
func sendTraffic(l *lab.Lab, from, fromDesc string, tcp, udp netip.AddrPort, toDesc string) error {
	fmt.Printf("\n%s -> %s%s:\n", fromDesc, tcp, toDesc)
	counts := map[string]int{}
	// The first dial may race nftproxy's first sync of the new Service.
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; i < 8; {
		ans, err := l.DialWithin(from, tcp, lab.TCP, 500*time.Millisecond)
		if err != nil {
			if i == 0 && time.Now().Before(deadline) {
				continue
			}
			return fmt.Errorf("TCP to %s: %w", tcp, err)
		}
		node := l.Pod(ans.Pod).Node.Name
		fmt.Printf("  tcp: answered by %-8s on %s (it saw client %s)\n", ans.Pod, node, ans.Source)
		counts[ans.Pod]++
		i++
	}
	ans, err := l.Dial(from, udp, lab.UDP)
	if err != nil {
		return fmt.Errorf("UDP to %s: %w", udp, err)
	}
	fmt.Printf("  udp: answered by %s\n", ans.Pod)
	fmt.Printf("  spread over backends: %v\n", counts)
	return nil
}
