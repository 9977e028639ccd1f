package lab

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"time"
)

// KubeProxyImage is upstream kube-proxy (KubernetesVersion, built in
// e2e/k8sbin) packed as upstream packs it: on distroless-iptables, which
// carries nft (kube-proxy's nftables mode runs `nft -f -`). Here the base
// is the distroless-iptables stand-in's Debian tools plus the host's
// /usr/sbin/nft with its shared libraries. Only `make conformance
// CONFORMANCE_PROXY=kube-proxy` uses it: the differential run.
const KubeProxyImage = "localhost/kube-proxy:" + KubernetesVersion + "-lab"

// EnsureKubeProxyImage builds kube-proxy when missing and packs its image
// into workDir (seconds); EnsureImages must have run (it builds mkimage).
func EnsureKubeProxyImage(ctx context.Context, repoRoot, cacheDir, workDir string, log io.Writer) (string, error) {
	bin, err := EnsureKubeProxy(ctx, repoRoot, cacheDir, log)
	if err != nil {
		return "", err
	}
	nft, err := exec.LookPath("nft")
	if err != nil {
		return "", fmt.Errorf("lab: nft not found (apt-get install -y nftables): %w", err)
	}
	tree, err := toolTree()
	if err != nil {
		return "", err
	}
	libs, err := sharedLibs([]string{nft})
	if err != nil {
		return "", err
	}
	files := []imageFile{{Src: bin, Dst: "/usr/local/bin/kube-proxy", Mode: 0o755}, {Src: nft, Dst: "/usr/sbin/nft", Mode: 0o755}}
	seen := map[string]bool{}
	for _, f := range append(tree.all, libs...) {
		if !seen[f.Dst] {
			seen[f.Dst] = true
			files = append(files, f)
		}
	}
	start := time.Now()
	s := imageSpec{Ref: KubeProxyImage, Out: filepath.Join(workDir, "kube-proxy-image.tar"),
		Entrypoint: []string{"/usr/local/bin/kube-proxy"}, Files: files,
		Symlinks: append(tree.applets, tree.bash...), Inline: etcFiles()}
	tool := filepath.Join(cacheDir, "images-"+KubernetesVersion, "bin", "mkimage")
	if err := mkimage(ctx, tool, s); err != nil {
		return "", err
	}
	fmt.Fprintf(log, "lab: images: packed %s (kube-proxy, nft and its libraries) in %s\n", KubeProxyImage, time.Since(start).Round(time.Second))
	return s.Out, nil
}
