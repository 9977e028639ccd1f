package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Versions of the control-plane components; they must match
// e2e/k8sbin/go.mod (and the constants in e2e/k8sbin/doc.go) and key the
// binary cache, so a version bump rebuilds.
const (
	EtcdVersion       = "v3.7.3"
	KubernetesVersion = "v1.37.2"
)

// Binaries are absolute paths of the programs a lab runs.
type Binaries struct {
	Etcd, APIServer, ControllerManager, Kubectl string
	NFTProxy, TestServer                        string
	// Scheduler and Kubelet are only built for real-kubelet clusters
	// (EnsureClusterBinaries).
	Scheduler, Kubelet string
}

// component is one main of e2e/k8sbin.
type component struct {
	name     string // directory in e2e/k8sbin and binary name
	estimate string // cold build time on 2 cores, shown while building
}

var components = []component{
	{"etcd", "~30 s"},
	{"kube-apiserver", "~4 min"},
	{"kube-controller-manager", "~1 min"},
	{"kubectl", "~20 s"},
}

// clusterComponents are the extra mains a real-kubelet cluster needs
// (Cluster); the namespace lab never builds them.
var clusterComponents = []component{
	{"kube-scheduler", "~1 min"},
	{"kubelet", "~7 min"},
}

// k8sLDFlags set the version the components report (else v0.0.0-master,
// which clients warn about) and strip symbols to halve the binary size.
func k8sLDFlags() string {
	var major, minor string
	if parts := strings.Split(strings.TrimPrefix(KubernetesVersion, "v"), "."); len(parts) >= 2 {
		major, minor = parts[0], parts[1]
	}
	var b strings.Builder
	b.WriteString("-s -w")
	for _, pkg := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		fmt.Fprintf(&b, " -X %s.gitVersion=%s -X %s.gitMajor=%s -X %s.gitMinor=%s -X %s.gitTreeState=clean",
			pkg, KubernetesVersion, pkg, major, pkg, minor, pkg)
	}
	return b.String()
}

// DefaultCacheDir is $XDG_CACHE_HOME/nftproxy-lab, else ~/.cache/nftproxy-lab.
func DefaultCacheDir() (string, error) {
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "nftproxy-lab"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("lab: no cache dir (set XDG_CACHE_HOME): %w", err)
	}
	return filepath.Join(home, ".cache", "nftproxy-lab"), nil
}

// versionDir is where binaries of the current versions live.
func versionDir(cacheDir string) string {
	return filepath.Join(cacheDir, "k8s-"+KubernetesVersion+"_etcd-"+EtcdVersion)
}

// EnsureControlPlane builds the control-plane binaries that are missing
// from the cache, printing one progress line per binary to log, and
// returns their paths. A file lock makes concurrent callers (two test
// packages, demo and test) wait for one build instead of racing.
func EnsureControlPlane(ctx context.Context, repoRoot, cacheDir string, log io.Writer) (Binaries, error) {
	dir, err := ensureComponents(ctx, repoRoot, cacheDir, log, components)
	if err != nil {
		return Binaries{}, err
	}
	path := func(name string) string { return filepath.Join(dir, name) }
	return Binaries{
		Etcd: path("etcd"), APIServer: path("kube-apiserver"),
		ControllerManager: path("kube-controller-manager"), Kubectl: path("kubectl"),
	}, nil
}

// EnsureClusterBinaries is EnsureControlPlane plus kube-scheduler and
// kubelet, for real-kubelet clusters.
func EnsureClusterBinaries(ctx context.Context, repoRoot, cacheDir string, log io.Writer) (Binaries, error) {
	b, err := EnsureControlPlane(ctx, repoRoot, cacheDir, log)
	if err != nil {
		return b, err
	}
	dir, err := ensureComponents(ctx, repoRoot, cacheDir, log, clusterComponents)
	if err != nil {
		return b, err
	}
	b.Scheduler, b.Kubelet = filepath.Join(dir, "kube-scheduler"), filepath.Join(dir, "kubelet")
	return b, nil
}

// ensureComponents builds the mains of list missing from the version
// directory of cacheDir (under its lock) and returns that directory.
func ensureComponents(ctx context.Context, repoRoot, cacheDir string, log io.Writer, list []component) (string, error) {
	dir := versionDir(cacheDir)
	if allExist(dir, list) {
		// Built binaries are only ever renamed into place: no need to
		// wait behind another build (e.g. e2e.test) holding the lock.
		return dir, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("lab: create cache dir: %w", err)
	}
	unlock, err := lockFile(filepath.Join(dir, ".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	for i, c := range list {
		out := filepath.Join(dir, c.name)
		if _, err := os.Stat(out); err == nil {
			continue
		}
		fmt.Fprintf(log, "lab: [%d/%d] building %s %s into %s (first run only, %s on 2 cores)...\n",
			i+1, len(list), c.name, versionOf(c.name), dir, c.estimate)
		start := time.Now()
		if err := goBuild(ctx, filepath.Join(repoRoot, "e2e", "k8sbin"), "./"+c.name, out, k8sLDFlags(), true); err != nil {
			return "", err
		}
		fmt.Fprintf(log, "lab: [%d/%d] built %s in %s\n", i+1, len(list), c.name, time.Since(start).Round(time.Second))
	}
	return dir, nil
}

func allExist(dir string, list []component) bool {
	for _, c := range list {
		if _, err := os.Stat(filepath.Join(dir, c.name)); err != nil {
			return false
		}
	}
	return true
}

func versionOf(name string) string {
	if name == "etcd" {
		return EtcdVersion
	}
	return KubernetesVersion
}

// goBuild builds pkg of the module in dir into out, atomically: a crash
// mid-build never leaves a truncated binary that later runs would trust.
// release builds (the cached control plane) are static and trimmed; the
// project's own binaries are built like a developer's `go build`, so they
// share the Go build cache with it instead of recompiling client-go.
func goBuild(ctx context.Context, dir, pkg, out, ldflags string, release bool) error {
	tmp := out + ".tmp"
	args := []string{"build", "-o", tmp}
	if release {
		args = append(args, "-trimpath")
	}
	if ldflags != "" {
		args = append(args, "-ldflags", ldflags)
	}
	cmd := exec.CommandContext(ctx, "go", append(args, pkg)...)
	cmd.Dir = dir
	// GOWORK=off: the k8sbin module must build on its own go.mod, whatever
	// workspace the developer has around the checkout.
	cmd.Env = append(os.Environ(), "GOWORK=off")
	if release {
		cmd.Env = append(cmd.Env, "CGO_ENABLED=0")
	}
	outb, err := cmd.CombinedOutput()
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("lab: go build %s in %s: %w\n%s", pkg, dir, err, outb)
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("lab: install %s: %w", out, err)
	}
	return nil
}

// lockFile takes an exclusive flock on path, waiting for other holders.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lab: open lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lab: lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

var (
	projectBinsMu   sync.Mutex
	projectBinsDone = map[string]string{} // repoRoot -> dir with built binaries
)

// EnsureProjectBinaries builds nftproxy (from the repo root) and the test
// server once per process into a temporary directory: they change with
// every edit, so they are not cached across runs (Go's build cache makes a
// rebuild take seconds). withProxy=false skips nftproxy (Options.NoProxy).
func EnsureProjectBinaries(ctx context.Context, repoRoot, proxyOverride string, withProxy bool) (nftproxy, testserver string, err error) {
	projectBinsMu.Lock()
	defer projectBinsMu.Unlock()
	dir, ok := projectBinsDone[repoRoot]
	if !ok {
		dir, err = os.MkdirTemp("", "nftlab-bin-")
		if err != nil {
			return "", "", fmt.Errorf("lab: temp dir for binaries: %w", err)
		}
		if proxyOverride == "" && withProxy {
			if err := goBuild(ctx, repoRoot, ".", filepath.Join(dir, "nftproxy"), "", false); err != nil {
				return "", "", err
			}
		}
		if err := goBuild(ctx, repoRoot, "./e2e/testserver", filepath.Join(dir, "testserver"), "", false); err != nil {
			return "", "", err
		}
		projectBinsDone[repoRoot] = dir
	}
	nftproxy = filepath.Join(dir, "nftproxy")
	if _, err := os.Stat(nftproxy); err != nil && proxyOverride == "" && withProxy {
		// An earlier lab of this process ran without nftproxy.
		if err := goBuild(ctx, repoRoot, ".", nftproxy, "", false); err != nil {
			return "", "", err
		}
	}
	if proxyOverride != "" {
		nftproxy = proxyOverride
	}
	return nftproxy, filepath.Join(dir, "testserver"), nil
}

// FindRepoRoot walks up from the working directory to the directory whose
// go.mod declares the nftproxy module.
func FindRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("lab: working directory: %w", err)
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(string(b), "module github.com/nftproxy/nftproxy\n") {
			return dir, nil
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("lab: read go.mod: %w", err)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("lab: nftproxy repo root not found above the working directory (set Options.RepoRoot)")
		}
		dir = parent
	}
}

// EnsureE2EBinaries builds upstream's e2e test binary (`go test -c
// k8s.io/kubernetes/test/e2e`, the same build as the release's e2e.test)
// and the ginkgo CLI from e2e/k8sbin into the version cache, and returns
// their paths.
func EnsureE2EBinaries(ctx context.Context, repoRoot, cacheDir string, log io.Writer) (e2eTest, ginkgo string, err error) {
	dir := versionDir(cacheDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("lab: create cache dir: %w", err)
	}
	unlock, err := lockFile(filepath.Join(dir, ".lock"))
	if err != nil {
		return "", "", err
	}
	defer unlock()
	mod := filepath.Join(repoRoot, "e2e", "k8sbin")
	e2eTest, ginkgo = filepath.Join(dir, "e2e.test"), filepath.Join(dir, "ginkgo")
	if _, err := os.Stat(ginkgo); err != nil {
		fmt.Fprintf(log, "lab: building ginkgo (first run only, ~30 s)...\n")
		if err := goBuild(ctx, mod, "github.com/onsi/ginkgo/v2/ginkgo", ginkgo, "-s -w", true); err != nil {
			return "", "", err
		}
	}
	if _, err := os.Stat(e2eTest); err == nil {
		return e2eTest, ginkgo, nil
	}
	fmt.Fprintf(log, "lab: building e2e.test %s (first run only, ~5 min on 2 cores, 3.5 GB of memory)...\n", KubernetesVersion)
	start := time.Now()
	tmp := e2eTest + ".tmp"
	cmd := exec.CommandContext(ctx, "go", "test", "-c", "-o", tmp, "-trimpath", "-ldflags", k8sLDFlags(), "k8s.io/kubernetes/test/e2e")
	cmd.Dir = mod
	cmd.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		_ = os.Remove(tmp)
		return "", "", fmt.Errorf("lab: go test -c k8s.io/kubernetes/test/e2e: %w\n%s", err, out)
	}
	if err := os.Rename(tmp, e2eTest); err != nil {
		return "", "", fmt.Errorf("lab: install %s: %w", e2eTest, err)
	}
	fmt.Fprintf(log, "lab: built e2e.test in %s\n", time.Since(start).Round(time.Second))
	return e2eTest, ginkgo, nil
}
