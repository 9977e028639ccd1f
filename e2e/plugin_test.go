package e2e

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/nftproxy/nftproxy/e2e/lab"
	"github.com/nftproxy/nftproxy/nftrules/dump"
)

// TestKubectlPlugin runs the real `kubectl nftproxy` (kubectl finding the
// nftproxy binary as kubectl-nftproxy on PATH) against the lab: it finds
// the DaemonSet's pod on the node and execs `nftproxy --dump` / `--trace`
// in it through the apiserver's pods/exec, which the apiserver proxies to
// the node's kubelet. The lab has no kubelet, so a fake one (exec endpoint
// only, real streaming protocol) runs the command in the node's namespace,
// the network of a hostNetwork pod.
func TestKubectlPlugin(t *testing.T) {
	l := startLab(t, lab.Options{Mode: lab.Routed, Nodes: 2, Prefix: "nftexec-"})
	ctx := ctxFor(t)
	if _, err := l.CreateDeployment(ctx, "client", 1, "node-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.CreateDeployment(ctx, "web", 1, "node-1"); err != nil {
		t.Fatal(err)
	}
	web, err := l.CreateService(ctx, lab.ServiceFor("web", "web", true))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.WaitForEndpoints(ctx, "web", 1); err != nil {
		t.Fatal(err)
	}

	// The container's "image": nftproxy with the pod's identity. The lab
	// has no service-account token mount, so the pod's credentials are the
	// lab's kubeconfig of the same ServiceAccount; NODE_NAME is the node.
	kubelet := startFakeKubelet(t, l, "node-1", map[string][]string{
		"nftproxy": {l.ProxyBinary(), "--kubeconfig=" + l.ProxyKubeconfig(), "--hostname-override=node-1"},
	})
	if err := kubelet.register(ctx, l); err != nil {
		t.Fatal(err)
	}
	ds := createDaemonSet(ctx, t, l)
	createDaemonSetPod(ctx, t, l, ds, "node-1")

	// kubectl finds the plugin on PATH by its name.
	bin := t.TempDir()
	if err := os.Symlink(l.ProxyBinary(), filepath.Join(bin, "kubectl-nftproxy")); err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := l.AdminKubeconfig()
	if err != nil {
		t.Fatal(err)
	}
	plugin := func(args ...string) (string, error) {
		args = append(append([]string{"PATH=" + bin + ":" + os.Getenv("PATH"), l.Binaries().Kubectl, "nftproxy"}, args...),
			"--kubeconfig="+kubeconfig)
		return nodeStdout(l, "node-2", "env", args...)
	}

	t.Run("Dump", func(t *testing.T) {
		followed(t, "kubectl nftproxy dump lists web", func() (bool, string) {
			out, err := plugin("dump", "--node", "node-1", "--format", "json")
			if err != nil {
				return false, err.Error() + ": " + out + "\nfake kubelet served: " + strings.Join(kubelet.served(), "; ")
			}
			var d dump.Dump
			if err := json.Unmarshal([]byte(out), &d); err != nil {
				return false, "parse: " + err.Error() + ": " + out
			}
			for _, sp := range d.Services {
				if sp.Namespace != "default" || sp.Name != "web" {
					continue
				}
				for _, fe := range sp.Frontends {
					if fe.Kind == dump.KindClusterIP && fe.Address == web.Spec.ClusterIP && len(fe.Endpoints) == 1 {
						return true, ""
					}
				}
			}
			return false, "web's ClusterIP " + web.Spec.ClusterIP + " with its endpoint not in: " + out
		})
		if !execServed(kubelet, "kube-system/nftproxy-node-1/nftproxy", "--dump") {
			t.Errorf("the dump did not come through the fake kubelet's exec: served %v", kubelet.served())
		}
	})

	t.Run("Trace", func(t *testing.T) {
		pod := l.Pod(l.PodsOf("web")[0])
		client := l.Pod("client-0").IPv4.String()
		dst := netip.AddrPortFrom(netip.MustParseAddr(web.Spec.ClusterIP), lab.SvcPort).String() + "/tcp"
		out, err := plugin("trace", "--node", "node-1", client, dst)
		if err != nil {
			t.Fatalf("kubectl nftproxy trace: %v\n%s\nfake kubelet served: %v", err, out, kubelet.served())
		}
		if !strings.Contains(out, pod.IPv4.String()) {
			t.Errorf("trace of web's ClusterIP does not name its endpoint %s:\n%s", pod.IPv4, out)
		}
		if !execServed(kubelet, "kube-system/nftproxy-node-1/nftproxy", "--trace="+client) {
			t.Errorf("the trace did not come through the fake kubelet's exec: served %v", kubelet.served())
		}
	})

	t.Run("NonZeroExit", func(t *testing.T) {
		// nftproxy fails in the pod: its standard error and its exit code
		// (the error stream's Status) reach the user, as with kubectl exec.
		out, err := plugin("dump", "--node", "node-1", "--format", "bogus")
		if err == nil {
			t.Fatalf("dump --format bogus succeeded:\n%s", out)
		}
		for _, want := range []string{`--dump-format "bogus": want text, json or nft`, "command terminated with exit code 1"} {
			if !strings.Contains(out, want) {
				t.Errorf("output does not say %q:\n%s", want, out)
			}
		}
	})

	t.Run("NoPodOnNode", func(t *testing.T) {
		out, err := plugin("dump", "--node", "node-2")
		if err == nil {
			t.Fatalf("dump on node-2 (no nftproxy pod) succeeded:\n%s", out)
		}
		for _, want := range []string{"no pod of DaemonSet kube-system/nftproxy on node node-2", "node-1"} {
			if !strings.Contains(out, want) {
				t.Errorf("error does not say %q:\n%s", want, out)
			}
		}
	})
}

func execServed(k *fakeKubelet, target, arg string) bool {
	for _, s := range k.served() {
		if strings.HasPrefix(s, target+" ") && strings.Contains(s, arg) {
			return true
		}
	}
	return false
}

// createDaemonSet creates manifests/daemonset.yaml's DaemonSet. The lab
// runs no DaemonSet controller: its pods are the test's to create.
func createDaemonSet(ctx context.Context, t *testing.T, l *lab.Lab) *appsv1.DaemonSet {
	t.Helper()
	root, err := lab.FindRepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "manifests", "daemonset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(b, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ds, ok := obj.(*appsv1.DaemonSet)
	if !ok {
		t.Fatalf("manifests/daemonset.yaml holds a %T", obj)
	}
	created, err := l.Client().AppsV1().DaemonSets(ds.Namespace).Create(ctx, ds, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return created
}

// createDaemonSetPod creates the DaemonSet's pod on node from its
// template, owned by it, and reports it Running, as the DaemonSet
// controller and kubelet would.
func createDaemonSetPod(ctx context.Context, t *testing.T, l *lab.Lab, ds *appsv1.DaemonSet, node string) *corev1.Pod {
	t.Helper()
	n := l.Node(node)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: ds.Name + "-" + node, Namespace: ds.Namespace, Labels: ds.Spec.Template.Labels,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(ds, appsv1.SchemeGroupVersion.WithKind("DaemonSet"))},
		},
		Spec: *ds.Spec.Template.Spec.DeepCopy(),
	}
	pod.Spec.NodeName = node
	created, err := l.Client().CoreV1().Pods(ds.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := metav1.Now()
	created.Status = corev1.PodStatus{
		Phase:  corev1.PodRunning,
		HostIP: n.IPv4.String(), PodIP: n.IPv4.String(),
		PodIPs:    []corev1.PodIP{{IP: n.IPv4.String()}, {IP: n.IPv6.String()}},
		StartTime: &now,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		},
		ContainerStatuses: []corev1.ContainerStatus{{
			Name: "nftproxy", Image: pod.Spec.Containers[0].Image, Ready: true,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		}},
	}
	updated, err := l.Client().CoreV1().Pods(ds.Namespace).UpdateStatus(ctx, created, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return updated
}
