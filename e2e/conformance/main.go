// Command conformance is `make conformance`: it builds what is missing
// (kubelet, kube-scheduler, the images, e2e.test and ginkgo, all cached by
// version), starts a real-kubelet lab cluster (e2e/lab, RealKubelets),
// deploys nftproxy as users do (`kubectl apply -k` of an overlay of
// manifests/ that swaps the image) and CoreDNS as kube-dns, checks a
// Service across nodes through its ClusterIP and NodePort, runs upstream's
// e2e tests with a focus (default: the [sig-network] [Conformance] tests),
// prints a summary table, leaves JUnit and logs in the results directory
// it names, and stops the cluster (-keep leaves it running).
//
//	conformance [-focus RE] [-skip RE] [-results DIR] [-keep] [-nodes N] [-rerun-failed] [-timeout D]
//	conformance up      # cluster + nftproxy + CoreDNS, left running
//	conformance build   # only build what a run with these flags needs
//	conformance down    # make conformance-down: stop a kept or crashed run
//	conformance diff NAME_A DIR_A NAME_B DIR_B   # two runs side by side
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/nftproxy/nftproxy/e2e/lab"
)

// prefix of the cluster's namespaces, work dir and cgroups: apart from the
// e2e labs (nftlab-) and the demo (nftdemo-).
const prefix = "nftconf-"

// DefaultFocus is the network conformance suite (47 tests in v1.37.2).
const DefaultFocus = `\[sig-network\].*\[Conformance\]`

type options struct {
	focus, skip, results string
	proxy                string // nftproxy or kube-proxy (the differential run)
	via                  string // e2e (e2e.test from here) or sonobuoy
	nodes, parallel      int
	keep                 bool
	rerunFailed          bool // run the failed tests once more (CI)
	timeout              time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.focus, "focus", DefaultFocus, "ginkgo focus regexp of the e2e tests to run")
	flag.StringVar(&o.skip, "skip", "", "ginkgo skip regexp")
	flag.StringVar(&o.results, "results", "", "results directory (default: ./conformance-results/<time>)")
	flag.StringVar(&o.proxy, "proxy", "nftproxy", "Service proxy deployed as the DaemonSet: nftproxy, or kube-proxy (upstream, nftables mode) for the differential run")
	flag.StringVar(&o.via, "via", "e2e", "how the tests run: e2e (e2e.test from the control-plane namespace) or sonobuoy (sonobuoy run --plugin e2e, as pods)")
	flag.IntVar(&o.nodes, "nodes", 2, "real kubelet nodes")
	flag.IntVar(&o.parallel, "parallel", 1, "ginkgo parallel processes")
	flag.BoolVar(&o.keep, "keep", false, "leave the cluster running (conformance down stops it)")
	flag.BoolVar(&o.rerunFailed, "rerun-failed", false, "run the failed tests once more on the same cluster; those that pass then are reported as flaky (e2e path only)")
	flag.DurationVar(&o.timeout, "timeout", 3*time.Hour, "overall time limit")
	flag.Parse()
	var err error
	switch flag.Arg(0) {
	case "":
		err = run(o, true)
	case "up":
		o.keep = true
		err = run(o, false)
	case "build":
		err = buildOnly(o)
	case "diff": // conformance diff NAME_A DIR_A NAME_B DIR_B
		if flag.NArg() != 5 {
			err = errors.New("usage: conformance diff NAME_A DIR_A NAME_B DIR_B")
			break
		}
		_, err = diffRuns(os.Stdout, flag.Arg(1), flag.Arg(2), flag.Arg(3), flag.Arg(4))
	case "down":
		if err = lab.Down(prefix); err == nil {
			fmt.Printf("conformance: cluster %s stopped, namespaces, mounts and cgroups removed\n", prefix)
		}
	default:
		err = fmt.Errorf("unknown command %q (want none, up, build, down or diff)", flag.Arg(0))
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "conformance: %v\n", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) {
	fmt.Printf("conformance: %s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func run(o options, tests bool) (err error) {
	begin := time.Now()
	ctx, cancel, root, err := prepare(o)
	if err != nil {
		return err
	}
	defer cancel()
	// Leftovers of a crashed run go before anything is staged.
	if err := lab.Down(prefix); err != nil {
		return err
	}
	stage, err := os.MkdirTemp("", prefix+"images-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	b, err := buildAll(ctx, o, root, stage, tests)
	if err != nil {
		return err
	}
	images, kit := b.images, b.kit
	e2eTest, ginkgo := b.e2eTest, b.ginkgo

	t := time.Now()
	l, err := lab.Start(ctx, lab.Options{Prefix: prefix, Nodes: o.nodes, RealKubelets: true,
		Images: images.Archives, KeepWorkDir: true, Log: os.Stdout})
	if err != nil {
		return err
	}
	defer func() {
		if err != nil || !o.keep {
			if err != nil {
				fmt.Fprintf(os.Stderr, "conformance: failed; logs in %s/logs\n", l.WorkDirPath())
			}
			step("stopping the cluster")
			err = errors.Join(err, l.Stop())
			return
		}
		l.Detach()
		kc, _ := l.AdminKubeconfig()
		step("cluster left running: ip netns exec %scp %s --kubeconfig %s get nodes; make conformance-down stops it",
			prefix, l.Binaries().Kubectl, kc)
	}()
	step("cluster up in %s (%d real nodes)", time.Since(t).Round(time.Second), o.nodes)
	c := &cluster{l: l, root: root}
	t = time.Now()
	deploy := c.deployNFTProxy
	if o.proxy == "kube-proxy" {
		deploy = c.deployKubeProxy
	}
	if err := deploy(ctx); err != nil {
		return err
	}
	step("%s DaemonSet Ready on every node in %s", o.proxy, time.Since(t).Round(time.Second))
	t = time.Now()
	if err := c.deployCoreDNS(ctx); err != nil {
		return err
	}
	step("CoreDNS Ready, kube-dns resolves through %s (%s)", o.proxy, time.Since(t).Round(time.Second))
	t = time.Now()
	if err := c.smoke(ctx); err != nil {
		return err
	}
	step("cross-node Service check passed (%s)", time.Since(t).Round(time.Second))
	if !tests {
		step("ready in %s", time.Since(begin).Round(time.Second))
		return nil
	}
	dir := o.results
	if dir == "" {
		dir = filepath.Join(root, "conformance-results", time.Now().Format("20060102-150405"))
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	step("running e2e focus %q, results in %s", o.focus, dir)
	var sum *summary
	if o.via == "sonobuoy" {
		sum, err = c.runSonobuoy(ctx, kit, dir, o)
	} else {
		sum, err = c.runE2E(ctx, e2eTest, ginkgo, dir, o)
		if err == nil && o.rerunFailed && sum.failed > 0 {
			sum, err = c.rerunFailed(ctx, e2eTest, ginkgo, dir, o, sum)
		}
	}
	if sum != nil {
		sum.print(os.Stdout)
		if werr := sum.write(filepath.Join(dir, "summary.txt")); werr != nil {
			err = errors.Join(err, werr)
		}
	}
	c.collectLogs(dir, o.proxy)
	step("done in %s; results in %s", time.Since(begin).Round(time.Second), dir)
	if err == nil && sum != nil && sum.failed > 0 {
		err = fmt.Errorf("%d of %d tests failed", sum.failed, sum.total())
	}
	return err
}

// prepare checks the flags and root, installs the missing Debian
// packages (the cluster's, and the tools the test images carry) and finds
// the repository; the context ends at -timeout.
func prepare(o options) (context.Context, context.CancelFunc, string, error) {
	if o.proxy != "nftproxy" && o.proxy != "kube-proxy" {
		return nil, nil, "", fmt.Errorf("-proxy %q: want nftproxy or kube-proxy", o.proxy)
	}
	if o.via != "e2e" && o.via != "sonobuoy" {
		return nil, nil, "", fmt.Errorf("-via %q: want e2e or sonobuoy", o.via)
	}
	if o.rerunFailed && o.via != "e2e" {
		return nil, nil, "", errors.New("-rerun-failed: only with -via e2e")
	}
	if os.Geteuid() != 0 {
		return nil, nil, "", errors.New("needs root (network namespaces, containerd, kubelet)")
	}
	if err := installPackages(); err != nil {
		return nil, nil, "", err
	}
	root, err := lab.FindRepoRoot()
	if err != nil {
		return nil, nil, "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	return ctx, cancel, root, nil
}

// installPackages installs the Debian packages the cluster and the test
// images need, when missing.
func installPackages() error {
	need := map[string]string{
		"containerd": "containerd", "runc": "runc", "/usr/lib/cni/bridge": "containernetworking-plugins",
		"iptables": "iptables", "busybox": "busybox-static", "dig": "bind9-dnsutils", "curl": "curl",
		"nc": "netcat-openbsd", "socat": "socat", "ip": "iproute2", "nft": "nftables", "wget": "wget",
	}
	var pkgs []string
	for bin, pkg := range need {
		if strings.HasPrefix(bin, "/") {
			if _, err := os.Stat(bin); err == nil {
				continue
			}
		} else if _, err := exec.LookPath(bin); err == nil {
			continue
		}
		pkgs = append(pkgs, pkg)
	}
	if len(pkgs) == 0 {
		return nil
	}
	step("apt-get install %s", strings.Join(pkgs, " "))
	// No daemon is started by these packages here: containerd ships only
	// a systemd unit, and the lab runs its own containerds.
	for _, args := range [][]string{{"update", "-qq"}, append([]string{"install", "-y", "-qq"}, pkgs...)} {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get %s: %w\n%s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}
