package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/nftproxy/nftproxy/e2e/lab"
	"github.com/nftproxy/nftproxy/nftrules/dump"
)

// TestOperationsOnLab checks, on a real lab, that nftproxy's credentials
// are exactly the manifests' RBAC, that --dump shows every address and
// endpoint the API says it should (and no drift), and that --trace agrees
// with real packets.
func TestOperationsOnLab(t *testing.T) {
	l := startLab(t, lab.Options{Mode: lab.Routed, Nodes: 2, Prefix: "nftops-"})
	ctx := ctxFor(t)
	if _, err := l.CreateDeployment(ctx, "client", 1, "node-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.CreateDeployment(ctx, "web", 2, "node-1", "node-2"); err != nil {
		t.Fatal(err)
	}
	spec := lab.ServiceFor("web", "web", true)
	spec.Spec.Type = corev1.ServiceTypeNodePort
	web, err := l.CreateService(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	empty, err := l.CreateService(ctx, lab.ServiceFor("empty", "nobody", false))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.WaitForEndpoints(ctx, "web", 2); err != nil {
		t.Fatal(err)
	}

	t.Run("RBACIsLeastPrivilege", func(t *testing.T) {
		// kubectl with the proxy's own kubeconfig, from a node (where
		// nftproxy runs and reaches the apiserver).
		kubectl := func(args ...string) (string, error) {
			return nodeStdout(l, "node-1", l.Binaries().Kubectl, append([]string{"--kubeconfig=" + l.ProxyKubeconfig()}, args...)...)
		}
		for _, allowed := range [][]string{{"get", "services", "-A"}, {"get", "endpointslices", "-A"}, {"get", "nodes"}} {
			if out, err := kubectl(allowed...); err != nil {
				t.Errorf("kubectl %v with the proxy's account: %v\n%s", allowed, err, out)
			}
		}
		for _, denied := range [][]string{{"get", "secrets", "-n", "kube-system"}, {"delete", "service", "web", "--dry-run=server"}, {"get", "pods", "-A"}} {
			out, err := kubectl(denied...)
			if err == nil || !strings.Contains(strings.ToLower(out), "forbidden") {
				t.Errorf("kubectl %v with the proxy's account: %v, want Forbidden\n%s", denied, err, out)
			}
		}
	})

	t.Run("DumpShowsWhatTheAPISays", func(t *testing.T) {
		followedDump(t, l, "node-2", func(d dump.Dump) error {
			if !d.ComparedWithAPI {
				return fmt.Errorf("dump did not compare with the API")
			}
			want := map[string]bool{}
			for _, ip := range web.Spec.ClusterIPs {
				want[ip] = true
			}
			seen := map[string]bool{}
			endpoints := map[string]bool{}
			nodePort := false
			for _, sp := range d.Services {
				if len(sp.Drift) > 0 {
					return fmt.Errorf("drift on %s/%s: %v", sp.Namespace, sp.Name, sp.Drift)
				}
				if sp.Name != "web" || !strings.EqualFold(sp.Protocol, "tcp") || sp.PortName != "tcp" {
					continue
				}
				for _, fe := range sp.Frontends {
					if fe.Kind == dump.KindClusterIP {
						seen[fe.Address] = true
					}
					if fe.Kind == dump.KindNodePort {
						nodePort = true
					}
					for _, ep := range fe.Endpoints {
						endpoints[ep.Address] = true
					}
				}
			}
			for ip := range want {
				if !seen[ip] {
					return fmt.Errorf("ClusterIP %s of web not in the dump (saw %v)", ip, seen)
				}
			}
			for _, p := range l.PodsOf("web") {
				pod := l.Pod(p)
				if !endpoints[pod.IPv4.String()] || !endpoints[pod.IPv6.String()] {
					return fmt.Errorf("endpoint %s (%s, %s) not in the dump (saw %v)", p, pod.IPv4, pod.IPv6, endpoints)
				}
			}
			if !nodePort {
				return fmt.Errorf("web's NodePort not in the dump")
			}
			return nil
		})
	})

	t.Run("TraceAgreesWithPackets", func(t *testing.T) {
		client := l.Pod("client-0")
		cases := []struct {
			dst     netip.AddrPort
			refused bool
		}{
			{netip.AddrPortFrom(netip.MustParseAddr(web.Spec.ClusterIP), lab.SvcPort), false},
			{netip.AddrPortFrom(netip.MustParseAddr(empty.Spec.ClusterIP), lab.SvcPort), true},
		}
		for _, tc := range cases {
			out, err := nodeStdout(l, "node-1", l.ProxyBinary(), "--trace", client.IPv4.String(), tc.dst.String()+"/tcp")
			if err != nil {
				t.Fatalf("--trace %s: %v\n%s", tc.dst, err, out)
			}
			trace := string(out)
			reached := map[string]bool{}
			for i := 0; i < 20; i++ {
				a, err := l.Dial("client-0", tc.dst, lab.TCP)
				if tc.refused {
					if !lab.IsRefused(err) {
						t.Errorf("%s: dial got %v, want refused", tc.dst, err)
					}
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				reached[a.Pod] = true
			}
			if tc.refused {
				if !strings.Contains(strings.ToLower(trace), "reject") {
					t.Errorf("%s: real packets are refused but the trace says:\n%s", tc.dst, trace)
				}
				continue
			}
			for p := range reached {
				if ip := l.Pod(p).IPv4.String(); !strings.Contains(trace, ip) {
					t.Errorf("%s: a real packet reached %s (%s), not in the trace:\n%s", tc.dst, p, ip, trace)
				}
			}
			if len(reached) != 2 {
				t.Errorf("%s: real packets reached %v, want both pods", tc.dst, reached)
			}
		}
	})
}

// followedDump runs --dump --dump-format=json on node until check passes
// (the node may still be programming the last change) or settle passes.
func followedDump(t *testing.T, l *lab.Lab, node string, check func(dump.Dump) error) {
	t.Helper()
	followed(t, "the dump of "+node+" shows the API's Services", func() (bool, string) {
		out, err := nodeStdout(l, node, l.ProxyBinary(), "--dump", "--dump-format=json",
			"--kubeconfig="+l.ProxyKubeconfig(), "--hostname-override="+node)
		if err != nil {
			return false, fmt.Sprintf("--dump: %v: %s", err, out)
		}
		var d dump.Dump
		if err := json.Unmarshal([]byte(out), &d); err != nil {
			return false, fmt.Sprintf("parse --dump json: %v", err)
		}
		if err := check(d); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
}

// nodeStdout runs a command in a node's namespace and returns its standard
// output (logs on standard error are kept out of parsed output, and
// appended to the returned text only on failure).
func nodeStdout(l *lab.Lab, node, bin string, args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", l.Node(node).NS.Name, bin}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out) + stderr.String(), err
	}
	return string(out), nil
}
