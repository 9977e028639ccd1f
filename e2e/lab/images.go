package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Images of a real-kubelet cluster, built here without a Docker engine or
// a registry: static Go binaries (and, for the test images, a few Debian
// tools with their shared libraries) packed by e2e/images/mkimage into
// `docker save` archives under the exact names the e2e test binary of
// KubernetesVersion uses (test/utils/image/manifest.go), which every node
// imports into its containerd. Tags other than latest are pulled
// IfNotPresent, so nothing is ever pulled.

// Image references of the e2e test binary (k8s.io/kubernetes v1.37.2).
const (
	AgnhostImage    = "registry.k8s.io/e2e-test-images/agnhost:2.66.1"
	BusyBoxImage    = "registry.k8s.io/e2e-test-images/busybox:1.37.0-2"
	GlibcDNSImage   = "registry.k8s.io/e2e-test-images/glibc-dns-testing:2.1.1"
	Regression74839 = "registry.k8s.io/e2e-test-images/regression-issue-74839:1.5"
	// DistrolessIptables is upstream's kube-proxy base image; the e2e
	// tests only run shell commands (sh, cat, grep) in it.
	DistrolessIptables = "registry.k8s.io/build-image/distroless-iptables:v0.9.9"
	CoreDNSImage       = "registry.k8s.io/coredns/coredns:v1.13.1"
	CoreDNSVersion     = "v1.13.1"
	imageRecipeLevel   = "5" // bump when a recipe below changes: rebuilds the cached archives
)

// NFTProxyImage is the reference of nftproxy's image built from the
// working tree (the Dockerfile's recipe: one static binary).
const NFTProxyImage = "localhost/nftproxy/nftproxy:lab"

// debianTools are the host programs (Debian packages busybox-static,
// bind9-dnsutils, curl, netcat-openbsd, socat, iproute2, bash, libc-bin,
// wget)
// the test images carry, as upstream's Alpine-based agnhost does: the e2e
// tests exec sh, dig, nc, curl, getent and busybox applets in them.
// GNU wget replaces busybox's: Debian's static busybox wget segfaults
// (exit 139, seen on the host too), which failed two Services tests.
var debianTools = []string{"/usr/bin/bash", "/usr/bin/dig", "/usr/bin/curl", "/usr/bin/nc",
	"/usr/bin/socat", "/usr/bin/getent", "/usr/bin/ss", "/usr/sbin/ip", "/usr/bin/wget"}

// imageSpec is e2e/images/mkimage's input.
type imageSpec struct {
	Ref        string        `json:"ref"`
	Out        string        `json:"out"`
	Entrypoint []string      `json:"entrypoint,omitempty"`
	Cmd        []string      `json:"cmd,omitempty"`
	Env        []string      `json:"env,omitempty"`
	Files      []imageFile   `json:"files,omitempty"`
	Symlinks   []imageLink   `json:"symlinks,omitempty"`
	Dirs       []string      `json:"dirs,omitempty"`
	Inline     []imageInline `json:"inline,omitempty"`
}

type imageFile struct {
	Src  string `json:"src"`
	Dst  string `json:"dst"`
	Mode int64  `json:"mode,omitempty"`
}

type imageLink struct {
	Dst    string `json:"dst"`
	Target string `json:"target"`
}

type imageInline struct {
	Dst     string `json:"dst"`
	Content string `json:"content"`
	Mode    int64  `json:"mode,omitempty"`
}

// ImageSet is the archives a cluster's nodes import.
type ImageSet struct {
	Archives []string          // every archive, for Options.Images
	ByRef    map[string]string // image reference -> archive
}

// EnsureImages builds the missing image archives (cached under cacheDir
// by Kubernetes version and recipe level) and nftproxy's image (always
// rebuilt from repoRoot into workDir: it is the code under test).
func EnsureImages(ctx context.Context, repoRoot, cacheDir, workDir string, log io.Writer) (ImageSet, error) {
	// Binaries by version, archives also by recipe level: a recipe change
	// repacks in seconds without rebuilding CoreDNS.
	bin := filepath.Join(cacheDir, "images-"+KubernetesVersion, "bin")
	dir := filepath.Join(cacheDir, "images-"+KubernetesVersion, "r"+imageRecipeLevel)
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return ImageSet{}, fmt.Errorf("lab: image dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return ImageSet{}, fmt.Errorf("lab: image dir: %w", err)
	}
	unlock, err := lockFile(filepath.Join(dir, ".lock"))
	if err != nil {
		return ImageSet{}, err
	}
	defer unlock()
	k8sbin := filepath.Join(repoRoot, "e2e", "k8sbin")
	imagesMod := filepath.Join(repoRoot, "e2e", "images")
	tools := []struct{ name, modDir, pkg, estimate string }{
		{"mkimage", imagesMod, "./mkimage", "~30 s"},
		{"pause", imagesMod, "./pause", "~5 s"},
		{"coredns", imagesMod, "./coredns", "~4 min"},
		{"agnhost", k8sbin, "k8s.io/kubernetes/test/images/agnhost", "~2 min"},
		{"regression-issue-74839", k8sbin, "k8s.io/kubernetes/test/images/regression-issue-74839", "~20 s"},
	}
	for i, t := range tools {
		out := filepath.Join(bin, t.name)
		if _, err := os.Stat(out); err == nil {
			continue
		}
		fmt.Fprintf(log, "lab: images [%d/%d] building %s (first run only, %s on 2 cores)...\n", i+1, len(tools), t.name, t.estimate)
		start := time.Now()
		if err := goBuild(ctx, t.modDir, t.pkg, out, "-s -w", true); err != nil {
			return ImageSet{}, err
		}
		fmt.Fprintf(log, "lab: images [%d/%d] built %s in %s\n", i+1, len(tools), t.name, time.Since(start).Round(time.Second))
	}
	tree, err := toolTree()
	if err != nil {
		return ImageSet{}, err
	}
	path := func(name string) string { return filepath.Join(dir, name+".tar") }
	specs := []imageSpec{
		{Ref: PauseImage, Out: path("pause"), Entrypoint: []string{"/pause"},
			Files: []imageFile{{Src: filepath.Join(bin, "pause"), Dst: "/pause"}}},
		agnhostSpec(path("agnhost"), bin, tree),
		{Ref: Regression74839, Out: path("regression-issue-74839"), Entrypoint: []string{"/regression-issue-74839"},
			Files: []imageFile{{Src: filepath.Join(bin, "regression-issue-74839"), Dst: "/regression-issue-74839"}}},
		{Ref: BusyBoxImage, Out: path("busybox"), Cmd: []string{"sh"},
			Files: tree.busybox, Symlinks: append(tree.bbApplets, tree.ash...), Inline: etcFiles()},
		{Ref: GlibcDNSImage, Out: path("glibc-dns-testing"), Cmd: []string{"/bin/sh"},
			Files: append([]imageFile{{Src: filepath.Join(bin, "coredns"), Dst: "/coredns"}}, tree.all...), Symlinks: append(tree.applets, tree.bash...), Inline: etcFiles()},
		{Ref: DistrolessIptables, Out: path("distroless-iptables"), Cmd: []string{"/bin/sh"},
			Files: tree.all, Symlinks: append(tree.applets, tree.bash...), Inline: etcFiles()},
		{Ref: CoreDNSImage, Out: path("coredns"), Entrypoint: []string{"/coredns"},
			Files: []imageFile{{Src: filepath.Join(bin, "coredns"), Dst: "/coredns"}}, Inline: etcFiles()},
	}
	set := ImageSet{ByRef: map[string]string{}}
	for _, s := range specs {
		if _, err := os.Stat(s.Out); err != nil {
			if err := mkimage(ctx, filepath.Join(bin, "mkimage"), s); err != nil {
				return ImageSet{}, err
			}
			fmt.Fprintf(log, "lab: images: packed %s\n", s.Ref)
		}
		set.Archives = append(set.Archives, s.Out)
		set.ByRef[s.Ref] = s.Out
	}
	// nftproxy: the Dockerfile's build (static, trimmed, stripped) on an
	// empty base with what distroless/static brings that nftproxy uses.
	proxyBin := filepath.Join(workDir, "nftproxy-static")
	start := time.Now()
	if err := goBuild(ctx, repoRoot, ".", proxyBin, "-s -w", true); err != nil {
		return ImageSet{}, err
	}
	s := imageSpec{Ref: NFTProxyImage, Out: filepath.Join(workDir, "nftproxy-image.tar"),
		Entrypoint: []string{"/usr/local/bin/nftproxy"},
		Files:      []imageFile{{Src: proxyBin, Dst: "/usr/local/bin/nftproxy", Mode: 0o755}},
		Inline:     etcFiles()}
	if err := mkimage(ctx, filepath.Join(bin, "mkimage"), s); err != nil {
		return ImageSet{}, err
	}
	fmt.Fprintf(log, "lab: images: built %s from %s in %s\n", NFTProxyImage, repoRoot, time.Since(start).Round(time.Second))
	set.Archives = append(set.Archives, s.Out)
	set.ByRef[s.Ref] = s.Out
	return set, nil
}

func mkimage(ctx context.Context, tool string, s imageSpec) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, tool)
	cmd.Stdin = strings.NewReader(string(b))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("lab: mkimage %s: %w: %s", s.Ref, err, out)
	}
	return nil
}

// agnhostSpec mirrors test/images/agnhost/Dockerfile: /agnhost (and the
// agnhost-2 link), /coredns (DNS tests run it as a test DNS server; ours
// is the CoreDNS built here), the porter certificates, /uploads, the
// image-defined user and group, and the tools the tests exec.
func agnhostSpec(out, bin string, tree tools) imageSpec {
	porter := filepath.Join(k8sModuleDir(), "test", "images", "agnhost", "porter")
	files := append([]imageFile{{Src: filepath.Join(bin, "agnhost"), Dst: "/agnhost", Mode: 0o755},
		{Src: filepath.Join(bin, "coredns"), Dst: "/coredns", Mode: 0o755},
		{Src: filepath.Join(porter, "localhost.crt"), Dst: "/localhost.crt", Mode: 0o644},
		{Src: filepath.Join(porter, "localhost.key"), Dst: "/localhost.key", Mode: 0o644}}, tree.all...)
	return imageSpec{Ref: AgnhostImage, Out: out, Entrypoint: []string{"/agnhost"}, Cmd: []string{"pause"},
		Files: files, Symlinks: append(append([]imageLink{{Dst: "/agnhost-2", Target: "agnhost"}}, tree.applets...), tree.bash...),
		Dirs: []string{"/uploads"}, Inline: etcFiles()}
}

// k8sModuleDir is k8s.io/kubernetes in the module cache (downloaded by
// the k8sbin builds).
func k8sModuleDir() string {
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		return ""
	}
	return filepath.Join(strings.TrimSpace(string(out)), "k8s.io", "kubernetes@"+KubernetesVersion)
}

// etcFiles are the /etc files a minimal image needs: users (with the
// user and group agnhost's image defines), name service order.
func etcFiles() []imageInline {
	return []imageInline{
		{Dst: "/etc/passwd", Content: "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\nuser-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh\n"},
		{Dst: "/etc/group", Content: "root:x:0:\nnogroup:x:65534:\nuser-defined-in-image:x:1000:\ngroup-defined-in-image:x:50000:user-defined-in-image\n"},
		{Dst: "/etc/nsswitch.conf", Content: "passwd: files\ngroup: files\nhosts: files dns\n"},
	}
}

// tools is the Debian tool tree of the test images.
type tools struct {
	busybox []imageFile // /bin/busybox only
	all     []imageFile // busybox, debianTools and their shared libraries
	applets []imageLink // /bin/<applet> -> busybox, but for sh, ash and the real tools
	// The shell: the test images' /bin/sh is bash, because Debian's
	// static busybox shell runs its own applets before PATH (its nc has no
	// -v, -u or -z); the busybox image's is busybox ash.
	ash, bash []imageLink
	bbApplets []imageLink // every applet, for the busybox image
}

// toolTree collects debianTools with the shared libraries ldd names,
// and busybox with a link per applet (in /bin; the real tools are in
// /usr/bin, earlier in PATH).
func toolTree() (tools, error) {
	var t tools
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return t, fmt.Errorf("lab: busybox not found (apt-get install -y busybox-static): %w", err)
	}
	t.busybox = []imageFile{{Src: bb, Dst: "/bin/busybox", Mode: 0o755}}
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		return t, fmt.Errorf("lab: busybox --list: %w", err)
	}
	real := map[string]bool{"busybox": true, "sh": true, "ash": true, "bash": true}
	for _, tool := range debianTools {
		real[filepath.Base(tool)] = true
	}
	for _, a := range strings.Fields(string(out)) {
		if a == "busybox" || a == "sh" || a == "ash" {
			continue
		}
		l := imageLink{Dst: "/bin/" + a, Target: "busybox"}
		t.bbApplets = append(t.bbApplets, l)
		if !real[a] {
			t.applets = append(t.applets, l)
		}
	}
	t.ash = []imageLink{{Dst: "/bin/sh", Target: "busybox"}, {Dst: "/bin/ash", Target: "busybox"}}
	t.bash = []imageLink{{Dst: "/bin/sh", Target: "/usr/bin/bash"}, {Dst: "/bin/bash", Target: "/usr/bin/bash"}}
	t.all = append(t.all, t.busybox...)
	for _, tool := range debianTools {
		if _, err := os.Stat(tool); err != nil {
			return t, fmt.Errorf("lab: %s not found (apt-get install -y bind9-dnsutils curl netcat-openbsd socat iproute2 bash wget): %w", tool, err)
		}
		t.all = append(t.all, imageFile{Src: tool, Dst: "/usr" + strings.TrimPrefix(tool, "/usr"), Mode: 0o755})
	}
	libs, err := sharedLibs(debianTools)
	if err != nil {
		return t, err
	}
	t.all = append(t.all, libs...)
	return t, nil
}

// sharedLibs are the shared libraries (and loader) ldd names for bins.
func sharedLibs(bins []string) ([]imageFile, error) {
	libs := map[string]bool{}
	for _, bin := range bins {
		out, err := exec.Command("ldd", bin).Output()
		if err != nil {
			return nil, fmt.Errorf("lab: ldd %s: %w", bin, err)
		}
		for _, line := range strings.Split(string(out), "\n") {
			for _, f := range strings.Fields(line) {
				if strings.HasPrefix(f, "/") {
					libs[f] = true
				}
			}
		}
	}
	names := make([]string, 0, len(libs))
	for l := range libs {
		names = append(names, l)
	}
	sort.Strings(names)
	files := make([]imageFile, 0, len(names))
	for _, l := range names {
		files = append(files, imageFile{Src: l, Dst: l})
	}
	return files, nil
}
