package plugin

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/nftproxy/nftproxy/proxier/app"
)

const dsUID = types.UID("ds-uid")

func proxyDaemonSet() *appsv1.DaemonSet {
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "nftproxy", UID: dsUID},
		Spec:       appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": "nftproxy"}}},
	}
}

func pod(name, node string, phase v1.PodPhase, owner types.UID, age time.Duration) *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: name, Labels: map[string]string{"k8s-app": "nftproxy"},
			CreationTimestamp: metav1.NewTime(time.Now().Add(-age)),
			OwnerReferences:   []metav1.OwnerReference{{Kind: "DaemonSet", Name: "nftproxy", UID: owner}}},
		Spec:   v1.PodSpec{NodeName: node, Containers: []v1.Container{{Name: "nftproxy"}}},
		Status: v1.PodStatus{Phase: phase},
	}
}

func node(name string) *v1.Node { return &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}} }

func TestProxyPod(t *testing.T) {
	deleting := pod("old", "n1", v1.PodRunning, dsUID, time.Hour)
	deleting.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	deleting.Finalizers = []string{"test"} // the fake tracker keeps objects with a deletion timestamp only with finalizers

	for _, tc := range []struct {
		name    string
		objs    []runtime.Object
		node    string
		want    string // pod name
		wantErr []string
	}{
		{name: "found", node: "n1", want: "p1",
			objs: []runtime.Object{proxyDaemonSet(), node("n1"), node("n2"),
				pod("p1", "n1", v1.PodRunning, dsUID, time.Minute), pod("p2", "n2", v1.PodRunning, dsUID, time.Minute)}},
		{name: "no DaemonSet", node: "n1", objs: []runtime.Object{node("n1")},
			wantErr: []string{"DaemonSet kube-system/nftproxy not found", "kubectl apply -k manifests/", "--namespace"}},
		{name: "no pod on the node", node: "n3",
			objs:    []runtime.Object{proxyDaemonSet(), node("n3"), pod("p1", "n1", v1.PodRunning, dsUID, time.Minute), pod("p2", "n2", v1.PodRunning, dsUID, 0)},
			wantErr: []string{"no pod of DaemonSet kube-system/nftproxy on node n3", "has pods on n1, n2", "tainted"}},
		{name: "no such node", node: "nope", objs: []runtime.Object{proxyDaemonSet()},
			wantErr: []string{`node "nope" not found`}},
		{name: "DaemonSet without pods", node: "n1", objs: []runtime.Object{proxyDaemonSet(), node("n1")},
			wantErr: []string{"the DaemonSet has no pods"}},
		{name: "pod of another owner with the same labels", node: "n1",
			objs:    []runtime.Object{proxyDaemonSet(), node("n1"), pod("impostor", "n1", v1.PodRunning, "other", 0)},
			wantErr: []string{"no pod of DaemonSet"}},
		{name: "pending", node: "n1",
			objs:    []runtime.Object{proxyDaemonSet(), node("n1"), pod("p1", "n1", v1.PodPending, dsUID, 0)},
			wantErr: []string{"nftproxy pod kube-system/p1 on node n1 is not running: Pending", "describe pod p1"}},
		{name: "rolling update: the running new pod, not the terminating old one", node: "n1", want: "new",
			objs: []runtime.Object{proxyDaemonSet(), node("n1"), deleting, pod("new", "n1", v1.PodRunning, dsUID, 0)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := fake.NewClientset(tc.objs...)
			p, err := proxyPod(context.Background(), client, "kube-system", "nftproxy", tc.node)
			if tc.wantErr != nil {
				if err == nil {
					t.Fatalf("found pod %s, want an error", p.Name)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Name != tc.want {
				t.Errorf("pod %s, want %s", p.Name, tc.want)
			}
		})
	}
}

func TestPluginCommands(t *testing.T) {
	if got, want := dumpCommand("json", "ns/web"), []string{"nftproxy", "--dump", "--dump-format=json", "--dump-service=ns/web"}; !slices.Equal(got, want) {
		t.Errorf("dump: %q, want %q", got, want)
	}
	if got, want := traceCommand("10.244.0.5", "10.96.0.10:80/tcp", ""), []string{"nftproxy", "--trace=10.244.0.5", "10.96.0.10:80/tcp"}; !slices.Equal(got, want) {
		t.Errorf("trace: %q, want %q", got, want)
	}
	if got := traceCommand("a", "b", "local"); !slices.Contains(got, "--trace-path=local") {
		t.Errorf("trace path not passed: %q", got)
	}
	// The commands run in the pod must parse as nftproxy's own flags.
	for _, argv := range [][]string{dumpCommand("nft", ""), traceCommand("10.244.0.5", "10.96.0.10:80/tcp", "forwarded")} {
		cmd := app.NewCommand()
		if err := cmd.ParseFlags(argv[1:]); err != nil {
			t.Errorf("%q: %v", argv, err)
		}
		if err := cmd.ValidateArgs(cmd.Flags().Args()); err != nil {
			t.Errorf("%q: args: %v", argv, err)
		}
	}
	for argv0, want := range map[string]bool{"/usr/local/bin/kubectl-nftproxy": true, "kubectl-nftproxy.exe": true, "nftproxy": false, "/bin/kubectl": false} {
		if IsPlugin(argv0) != want {
			t.Errorf("IsPlugin(%q) = %v", argv0, !want)
		}
	}
	if err := runPlugin(t, "dump"); err == nil || !strings.Contains(err.Error(), "--node is required") {
		t.Errorf("dump without --node: %v", err)
	}
	if err := runPlugin(t, "trace", "--node", "n1", "10.0.0.1"); err == nil || !strings.Contains(err.Error(), "accepts 2 arg(s)") {
		t.Errorf("trace with one argument: %v", err)
	}
}

func runPlugin(t *testing.T, args ...string) error {
	t.Helper()
	cmd := NewCommand()
	cmd.SetArgs(args)
	var out strings.Builder
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	return cmd.Execute()
}
