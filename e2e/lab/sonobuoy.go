package lab

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// SonobuoyVersion is the sonobuoy of e2e/sonobuoy/go.mod.
const SonobuoyVersion = "v0.57.3"

// The images of `make conformance CONFORMANCE_VIA=sonobuoy`, passed to
// `sonobuoy run` with --sonobuoy-image and --kube-conformance-image.
const (
	SonobuoyImage    = "localhost/sonobuoy:" + SonobuoyVersion + "-lab"
	ConformanceImage = "localhost/conformance:" + KubernetesVersion + "-lab"
)

// SonobuoyKit is the sonobuoy CLI and the two image archives it runs.
type SonobuoyKit struct {
	CLI      string
	Archives []string
}

// EnsureSonobuoy builds sonobuoy (e2e/sonobuoy) and go-runner (the
// conformance image's entry point, from k8s.io/kubernetes
// test/conformance/image/go-runner) into the cache when missing, and packs
// into workDir the sonobuoy image (upstream's: /sonobuoy on a distroless
// base) and the conformance image (upstream's test/conformance/image
// Dockerfile: ginkgo, e2e.test, kubectl and go-runner as kubeconformance,
// /run_e2e.sh and /gorunner, its E2E_* defaults). EnsureImages must have
// run (it builds mkimage).
func EnsureSonobuoy(ctx context.Context, repoRoot, cacheDir, workDir, e2eTest, ginkgo, kubectl string, log io.Writer) (SonobuoyKit, error) {
	dir := filepath.Join(cacheDir, "sonobuoy-"+SonobuoyVersion+"_k8s-"+KubernetesVersion)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return SonobuoyKit{}, fmt.Errorf("lab: sonobuoy cache dir: %w", err)
	}
	unlock, err := lockFile(filepath.Join(dir, ".lock"))
	if err != nil {
		return SonobuoyKit{}, err
	}
	defer unlock()
	cli, gorunner := filepath.Join(dir, "sonobuoy"), filepath.Join(dir, "go-runner")
	for _, b := range []struct{ out, mod, pkg, estimate string }{
		{cli, filepath.Join(repoRoot, "e2e", "sonobuoy"), ".", "~2 min"},
		{gorunner, filepath.Join(repoRoot, "e2e", "k8sbin"), "k8s.io/kubernetes/test/conformance/image/go-runner", "~5 s"},
	} {
		if _, err := os.Stat(b.out); err == nil {
			continue
		}
		fmt.Fprintf(log, "lab: building %s (first run only, %s on 2 cores)...\n", filepath.Base(b.out), b.estimate)
		start := time.Now()
		if err := goBuild(ctx, b.mod, b.pkg, b.out, "-s -w", true); err != nil {
			return SonobuoyKit{}, err
		}
		fmt.Fprintf(log, "lab: built %s in %s\n", filepath.Base(b.out), time.Since(start).Round(time.Second))
	}
	tool := filepath.Join(cacheDir, "images-"+KubernetesVersion, "bin", "mkimage")
	specs := []imageSpec{
		{Ref: SonobuoyImage, Out: filepath.Join(workDir, "sonobuoy-image.tar"),
			Cmd:   []string{"/sonobuoy", "aggregator", "--no-exit", "-v", "3", "--logtostderr"},
			Files: []imageFile{{Src: cli, Dst: "/sonobuoy", Mode: 0o755}}, Dirs: []string{"/tmp"}, Inline: etcFiles()},
		{Ref: ConformanceImage, Out: filepath.Join(workDir, "conformance-image.tar"),
			Entrypoint: []string{"kubeconformance"},
			Env: []string{`E2E_FOCUS=\[Conformance\]`, "E2E_SKIP=", "E2E_PROVIDER=local", "E2E_PARALLEL=1",
				"E2E_VERBOSITY=4", "RESULTS_DIR=/tmp/results", "KUBECONFIG="},
			Files: []imageFile{{Src: ginkgo, Dst: "/usr/local/bin/ginkgo", Mode: 0o755},
				{Src: e2eTest, Dst: "/usr/local/bin/e2e.test", Mode: 0o755},
				{Src: kubectl, Dst: "/usr/local/bin/kubectl", Mode: 0o755},
				{Src: gorunner, Dst: "/usr/local/bin/kubeconformance", Mode: 0o755},
				{Src: gorunner, Dst: "/run_e2e.sh", Mode: 0o755},
				{Src: gorunner, Dst: "/gorunner", Mode: 0o755}},
			Dirs: []string{"/kubernetes/cluster", "/tmp"}, Inline: etcFiles()},
	}
	kit := SonobuoyKit{CLI: cli}
	for _, s := range specs {
		start := time.Now()
		if err := mkimage(ctx, tool, s); err != nil {
			return SonobuoyKit{}, err
		}
		fmt.Fprintf(log, "lab: images: packed %s in %s\n", s.Ref, time.Since(start).Round(time.Second))
		kit.Archives = append(kit.Archives, s.Out)
	}
	return kit, nil
}
