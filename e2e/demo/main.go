// Command demo is `make demo`: it builds what is missing, starts a 2-node
// lab with nftproxy on every node, creates example Services, sends
// traffic from a pod, prints who answered and a node's ruleset, and
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
)

// prefix keeps the demo apart from e2e labs ("nftlab-"), so running the
// tests does not tear down a demo and vice versa.
const prefix = "nftdemo-"

func main() {
	mode := flag.String("mode", string(lab.Routed), "cross-node network: routed or vxlan")
	nodes := flag.Int("nodes", 2, "number of nodes")
	downPrefix := flag.String("prefix", prefix, "with down: the lab to stop (e.g. the leftovers of a killed test run, nftlab-<pid>-)")
	flag.Parse()
	var err error
	switch flag.Arg(0) {
	case "":
		err = demo(lab.Mode(*mode), *nodes)
	case "down":
		if err = lab.Down(*downPrefix); err == nil {
			fmt.Printf("lab %s stopped, namespaces deleted\n", *downPrefix)
		}
	default:
		err = fmt.Errorf("unknown command %q (want no argument, or down)", flag.Arg(0))
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

func demo(mode lab.Mode, nodes int) (err error) {
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
		if err := sendTraffic(l, svc, netip.MustParseAddr(ip)); err != nil {
			return err
		}
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
	fmt.Printf("Lab left running. Stop it: make demo-down | look inside a node: ip netns exec %snode-1 nft list ruleset\n", prefix)
	return nil
}

// sendTraffic dials the Service 8 times over TCP and once over UDP from
// the client pod and prints who answered and the source it saw.
func sendTraffic(l *lab.Lab, svc *corev1.Service, ip netip.Addr) error {
	fmt.Printf("\nclient-0 (node-1) -> %s:\n", netip.AddrPortFrom(ip, lab.SvcPort))
	counts := map[string]int{}
	// The first dial may race nftproxy's first sync of the new Service.
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; i < 8; {
		ans, err := l.DialWithin("client-0", netip.AddrPortFrom(ip, lab.SvcPort), lab.TCP, 500*time.Millisecond)
		if err != nil {
			if i == 0 && time.Now().Before(deadline) {
				continue
			}
			return fmt.Errorf("TCP to %s: %w", ip, err)
		}
		node := l.Pod(ans.Pod).Node.Name
		fmt.Printf("  tcp: answered by %-8s on %s (it saw client %s)\n", ans.Pod, node, ans.Source)
		counts[ans.Pod]++
		i++
	}
	ans, err := l.Dial("client-0", netip.AddrPortFrom(ip, lab.SvcPort), lab.UDP)
	if err != nil {
		return fmt.Errorf("UDP to %s: %w", ip, err)
	}
	fmt.Printf("  udp: answered by %s\n", ans.Pod)
	fmt.Printf("  spread over backends: %v\n", counts)
	return nil
}
