package main

import (
	"context"
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nftproxy/nftproxy/e2e/lab"
)

// cluster is a running conformance cluster.
type cluster struct {
	l    *lab.Lab
	root string
}

func (c *cluster) kubectl(ctx context.Context, stdin string, args ...string) (string, error) {
	out, err := c.l.Kubectl(ctx, stdin, args...)
	return strings.TrimSpace(string(out)), err
}

// overlay is the kustomization users would write over manifests/: the
// image swapped for the locally built one and, as the README's Deploy
// section asks on a cluster where no proxy has programmed the kubernetes
// Service yet, the API server's address in the ConfigMap.
const overlay = `apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - %s
images:
  - name: ghcr.io/nftproxy/nftproxy
    newName: %s
    newTag: %s
configMapGenerator:
  - name: nftproxy
    namespace: kube-system
    behavior: merge
    literals:
      - apiserver-host=%s
      - apiserver-port=%d
`

// deployNFTProxy applies the overlay with `kubectl apply -k` and waits
// until the DaemonSet's pod is Ready on every node and has programmed its
// table there.
func (c *cluster) deployNFTProxy(ctx context.Context) error {
	dir := filepath.Join(c.l.WorkDirPath(), "nftproxy-overlay")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	rel, err := filepath.Rel(dir, filepath.Join(c.root, "manifests"))
	if err != nil {
		return err
	}
	name, tag, _ := strings.Cut(lab.NFTProxyImage, ":")
	y := fmt.Sprintf(overlay, rel, name, tag, lab.APIServerAddress().String(), lab.APIServerPort)
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(y), 0o644); err != nil {
		return err
	}
	out, err := c.kubectl(ctx, "", "apply", "-k", dir)
	if err != nil {
		return err
	}
	step("kubectl apply -k %s:\n%s", dir, out)
	return c.waitProxy(ctx, "nftproxy", lab.ProxyTable)
}

// waitProxy waits until the proxy DaemonSet ds has a Ready pod on every
// node and that pod has programmed its nftables table there.
func (c *cluster) waitProxy(ctx context.Context, ds, table string) error {
	// rollout status passes a DaemonSet the controller has not yet
	// scheduled anywhere: wait for one Ready pod per node instead.
	want := fmt.Sprintf("%d %d %d", len(c.l.Nodes()), len(c.l.Nodes()), len(c.l.Nodes()))
	deadline := time.Now().Add(3 * time.Minute)
	for {
		got, err := c.kubectl(ctx, "", "-n", "kube-system", "get", "daemonset", ds, "-o",
			"jsonpath={.status.desiredNumberScheduled} {.status.updatedNumberScheduled} {.status.numberReady}")
		if err == nil && got == want {
			break
		}
		if time.Now().After(deadline) {
			pods, _ := c.kubectl(ctx, "", "-n", "kube-system", "get", "pods", "-o", "wide")
			desc, _ := c.kubectl(ctx, "", "-n", "kube-system", "describe", "daemonset", ds)
			return fmt.Errorf("%s DaemonSet: desired/updated/ready %q, want %q (%v)\npods:\n%s\n%s", ds, got, want, err, pods, desc)
		}
		time.Sleep(time.Second)
	}
	pods, _ := c.kubectl(ctx, "", "-n", "kube-system", "get", "pods", "-l", "k8s-app="+ds, "-o", "wide")
	step("%s pods:\n%s", ds, pods)
	// Ready is not programmed: kubeadm's kube-proxy DaemonSet has no
	// readiness probe, so its pods are Ready a second after they start,
	// before kube-proxy has listed anything or written its table.
	for _, n := range c.l.Nodes() {
		for {
			rules, err := c.l.NodeRules(n.Name)
			if err != nil {
				return err
			}
			if strings.Contains(rules, "table ip "+table) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("no %s table on %s:\n%s", ds, n.Name, rules)
			}
			time.Sleep(time.Second)
		}
	}
	return nil
}

// waitRollout waits for `kubectl rollout status` of a kube-system object,
// showing the pods if it does not finish.
func (c *cluster) waitRollout(ctx context.Context, obj string, timeout time.Duration) error {
	_, err := c.kubectl(ctx, "", "-n", "kube-system", "rollout", "status", obj, "--timeout="+timeout.String())
	if err != nil {
		pods, _ := c.kubectl(ctx, "", "-n", "kube-system", "get", "pods", "-o", "wide")
		desc, _ := c.kubectl(ctx, "", "-n", "kube-system", "describe", obj)
		return fmt.Errorf("%w\npods:\n%s\n%s", err, pods, desc)
	}
	return nil
}

//go:embed coredns.yaml
var corednsYAML string

// deployCoreDNS runs CoreDNS (built from its module) as kube-dns and
// waits for it to be Ready: its readiness needs the API, reached through
// the kubernetes Service, i.e. through nftproxy.
func (c *cluster) deployCoreDNS(ctx context.Context) error {
	y := strings.NewReplacer("@IMAGE@", lab.CoreDNSImage, "@DNSIP@", lab.ClusterDNSIP.String(),
		"@DOMAIN@", lab.ClusterDomain).Replace(corednsYAML)
	if _, err := c.kubectl(ctx, y, "apply", "-f", "-"); err != nil {
		return err
	}
	return c.waitRollout(ctx, "deployment/coredns", 3*time.Minute)
}

// smokeYAML: two agnhost servers on the last node, a client on the first,
// a NodePort Service in front of the servers.
const smokeYAML = `apiVersion: v1
kind: Namespace
metadata: {name: nftconf-smoke}
---
apiVersion: v1
kind: Service
metadata: {name: smoke, namespace: nftconf-smoke}
spec:
  type: NodePort
  selector: {app: smoke}
  ports: [{port: 80, targetPort: 8080}]
`

const smokePod = `---
apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: nftconf-smoke, labels: {%s}}
spec:
  nodeName: %s
  terminationGracePeriodSeconds: 1
  containers:
    - name: agnhost
      image: %s
      args: [%s]
      readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
`

// smoke checks, from a pod on the first node, a Service whose endpoints
// are on the last: its ClusterIP, its NodePort on both nodes, and its
// name through kube-dns.
func (c *cluster) smoke(ctx context.Context) error {
	nodes := c.l.Nodes()
	first, last := nodes[0], nodes[len(nodes)-1]
	y := smokeYAML
	for i := 1; i <= 2; i++ {
		y += fmt.Sprintf(smokePod, fmt.Sprintf("server-%d", i), "app: smoke", last.Name, lab.AgnhostImage, "netexec, --http-port=8080")
	}
	y += fmt.Sprintf(smokePod, "client", "role: client", first.Name, lab.AgnhostImage, "netexec, --http-port=8080")
	if _, err := c.kubectl(ctx, y, "apply", "-f", "-"); err != nil {
		return err
	}
	if _, err := c.kubectl(ctx, "", "-n", "nftconf-smoke", "wait", "--for=condition=Ready", "pod", "--all", "--timeout=120s"); err != nil {
		pods, _ := c.kubectl(ctx, "", "-n", "nftconf-smoke", "describe", "pods")
		return fmt.Errorf("%w\n%s", err, pods)
	}
	ip, err := c.kubectl(ctx, "", "-n", "nftconf-smoke", "get", "svc", "smoke", "-o", "jsonpath={.spec.clusterIP}")
	if err != nil {
		return err
	}
	np, err := c.kubectl(ctx, "", "-n", "nftconf-smoke", "get", "svc", "smoke", "-o", "jsonpath={.spec.ports[0].nodePort}")
	if err != nil {
		return err
	}
	targets := []string{ip + ":80", first.IPv4.String() + ":" + np, last.IPv4.String() + ":" + np,
		"smoke.nftconf-smoke.svc." + lab.ClusterDomain + ":80"}
	for _, t := range targets {
		var last string
		deadline := time.Now().Add(30 * time.Second)
		for {
			out, err := c.kubectl(ctx, "", "-n", "nftconf-smoke", "exec", "client", "--",
				"curl", "-sS", "--max-time", "3", "http://"+t+"/hostname")
			if err == nil && strings.HasPrefix(out, "server-") {
				step("  client on %s -> %s answered by %s", first.Name, t, out)
				break
			}
			last = fmt.Sprint(out, err)
			if time.Now().After(deadline) {
				return fmt.Errorf("client on %s -> %s: %s", first.Name, t, last)
			}
			time.Sleep(time.Second)
		}
	}
	_, err = c.kubectl(ctx, "", "delete", "namespace", "nftconf-smoke", "--wait=false")
	return err
}

// collectLogs copies the cluster's logs into the results directory.
func (c *cluster) collectLogs(dir, proxy string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, what := range [][]string{{"get", "nodes", "-o", "wide"}, {"get", "pods", "-A", "-o", "wide"}} {
		out, _ := c.kubectl(ctx, "", what...)
		_ = os.WriteFile(filepath.Join(dir, strings.Join(what[:2], "-")+".txt"), []byte(out+"\n"), 0o644)
	}
	for _, n := range c.l.Nodes() {
		out, _ := c.kubectl(ctx, "", "-n", "kube-system", "logs", "-l", "k8s-app="+proxy, "--all-containers", "--tail=-1", "--prefix", "--max-log-requests=10")
		_ = os.WriteFile(filepath.Join(dir, proxy+"-pods.log"), []byte(out+"\n"), 0o644)
		rules, _ := c.l.NodeRules(n.Name)
		_ = os.WriteFile(filepath.Join(dir, "ruleset-"+n.Name+".nft"), []byte(rules), 0o644)
	}
}
