package e2e

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/nftproxy/nftproxy/e2e/lab"
)

// TestManifestsServerDryRun has the lab's real kube-apiserver validate
// manifests/ as kustomize renders them: `kubectl apply --dry-run=server -k`
// (admission, schema and RBAC objects included; nothing is persisted).
func TestManifestsServerDryRun(t *testing.T) {
	l := startLab(t, lab.Options{Prefix: "nftmf-", Nodes: 2, NoProxy: true})
	root, err := lab.FindRepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	kc, err := l.AdminKubeconfig()
	if err != nil {
		t.Fatal(err)
	}
	cp, err := l.NS("cp")
	if err != nil {
		t.Fatal(err)
	}
	out, err := cp.Exec(l.Binaries().Kubectl, "--kubeconfig", kc, "apply", "--dry-run=server", "-k", filepath.Join(root, "manifests"))
	if err != nil {
		t.Fatalf("kubectl apply --dry-run=server -k manifests/: %v", err)
	}
	t.Logf("%s", out)
	for _, want := range []string{"daemonset.apps/nftproxy", "configmap/nftproxy", "clusterrole.rbac.authorization.k8s.io/nftproxy", "(server dry run)"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}
