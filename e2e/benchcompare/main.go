// Command benchcompare (`make bench-compare`) measures nftproxy and
// upstream kube-proxy side by side as real processes: a lab control plane
// (real etcd, kube-apiserver, kube-controller-manager) holds N Services ×
// M endpoints, and each proxy in turn runs on the same node namespace
// against the same API contents. For each it measures the time from
// process start to the rules in the kernel, the latency of endpoint
// changes (EndpointSlice update to kernel), peak RSS and CPU of the
// process (and of the children kube-proxy spawns), and the time to show
// the rules. It prints a table and writes JSON.
//
// Everything runs in network namespaces the lab creates; nothing is
// programmed in the host's namespace and no packet leaves the machine.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/nftproxy/nftproxy/e2e/lab"
	"github.com/nftproxy/nftproxy/e2e/netkit"
)

type config struct {
	sizes      []int // control-plane sizes
	dpSizes    []int // data-plane sizes
	burst      int
	dualStack  bool
	m          int
	changes    int
	runs       int
	proxies    []string
	nftproxies []namedBin
	iptMax     int
	out        string
	keep       bool
	noMinSync1 bool
	workers    int
	cacheDir   string
	profileDir string
	hold       bool
	idleMax    time.Duration
}

type namedBin struct{ name, path string }

// heldPrefix names the lab -hold leaves running.
const heldPrefix = "nftbench-held-"

func parseFlags() (*config, error) {
	c := &config{}
	sizes := flag.String("n", "1000,10000", "comma-separated numbers of Services for the control-plane figures")
	dpSizes := flag.String("dp-n", "1,1000,10000,30000", "comma-separated numbers of Services loaded for the data-plane figures (empty: none)")
	flag.IntVar(&c.burst, "burst", 1000, "endpoint changes sent within one second in the burst measurement (0: none)")
	big := flag.Bool("big", false, "also measure 50,000 Services")
	flag.IntVar(&c.m, "m", 10, "endpoints per Service")
	flag.BoolVar(&c.dualStack, "dual-stack", false, "load dual-stack Services (an IPv6 ClusterIP and slice each besides the IPv4 ones); start -> kernel waits for both families, changes and the data plane stay IPv4")
	flag.IntVar(&c.changes, "changes", 20, "endpoint changes timed per run and mode")
	flag.IntVar(&c.runs, "runs", 1, "runs per proxy and size (the table shows medians)")
	proxies := flag.String("proxies", "nftproxy,kube-proxy-nftables,kube-proxy-iptables", "proxies to measure")
	bins := flag.String("nftproxy", "", "nftproxy binaries to compare, as name=path,... (default: built from this checkout)")
	flag.IntVar(&c.iptMax, "iptables-max", 1000, "largest N kube-proxy iptables mode is run at (its first sync takes ~13 min at 10k)")
	flag.StringVar(&c.out, "out", "bench-compare.json", "JSON results file")
	flag.BoolVar(&c.keep, "keep", false, "keep the lab's work directory (proxy logs)")
	flag.BoolVar(&c.noMinSync1, "no-default-min-sync", false, "skip the runs at the default --min-sync-period=1s")
	flag.IntVar(&c.workers, "workers", 16, "concurrent writes while loading")
	flag.StringVar(&c.profileDir, "profile", "", "directory for heap profiles of the nftproxy runs (run with --profiling; after the first sync and at the end)")
	flag.DurationVar(&c.idleMax, "idle-max", time.Minute, "longest wait, before each proxy's change and data-plane windows, for its CPU to stop growing (2 s) and the 1-minute load to come back near its value before the benchmark (0: a fixed 2 s pause)")
	flag.BoolVar(&c.hold, "hold", false, "leave the lab (prefix nftbench-held-) running with its load after the runs, for experiments; stop it with -down")
	down := flag.Bool("down", false, "stop a lab left by -hold, and exit")
	renderFrom := flag.String("render", "", "rewrite the generated blocks of README.md and docs/performance.md (and the plots) from this JSON results file, and exit")
	flag.StringVar(&c.cacheDir, "cache-dir", "", "control-plane binary cache (default the lab's, ~/.cache/nftproxy-lab)")
	flag.Parse()
	if *renderFrom != "" {
		root, err := lab.FindRepoRoot()
		if err == nil {
			err = render(root, *renderFrom)
		}
		if err != nil {
			return nil, fmt.Errorf("-render: %w", err)
		}
		os.Exit(0)
	}
	if *down {
		if err := lab.Down(heldPrefix); err != nil {
			return nil, err
		}
		os.Exit(0)
	}
	var err error
	if c.sizes, err = parseSizes("-n", *sizes); err != nil {
		return nil, err
	}
	if c.dpSizes, err = parseSizes("-dp-n", *dpSizes); err != nil {
		return nil, err
	}
	if *big {
		c.sizes = append(c.sizes, 50000)
	}
	c.proxies = strings.Split(*proxies, ",")
	if *bins != "" {
		for _, b := range strings.Split(*bins, ",") {
			name, path, ok := strings.Cut(b, "=")
			if !ok {
				return nil, fmt.Errorf("-nftproxy: want name=path, got %q", b)
			}
			c.nftproxies = append(c.nftproxies, namedBin{name, path})
		}
	}
	return c, nil
}

func parseSizes(flagName, list string) ([]int, error) {
	var out []int
	for _, s := range strings.Split(list, ",") {
		if strings.TrimSpace(s) == "" {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n >= connIndex {
			return nil, fmt.Errorf("%s: bad size %q", flagName, s)
		}
		out = append(out, n)
	}
	return out, nil
}

func main() {
	c, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c); err != nil {
		fmt.Fprintln(os.Stderr, "bench-compare:", err)
		os.Exit(1)
	}
}

// report is the JSON file.
type report struct {
	Date    string  `json:"date"`
	Machine machine `json:"machine"`
	Command string  `json:"command"`
	// DualStack: every Service had an IPv6 ClusterIP and slice too.
	DualStack bool        `json:"dualStack,omitempty"`
	Runs      []runResult `json:"runs"`
	// Statistic says what Summary's figures are; Summary is written from
	// Runs with every write (and ignored when read back).
	Statistic string        `json:"statistic"`
	Summary   []summaryLine `json:"summary"`
}

type machine struct {
	Cores   int     `json:"cores"`
	Kernel  string  `json:"kernel"`
	Go      string  `json:"go"`
	CPU     string  `json:"cpu"`
	LoadAvg float64 `json:"loadAvgAtStart"`
	Memory  string  `json:"memory"`
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func run(ctx context.Context, c *config) error {
	rep := report{Date: time.Now().Format(time.RFC3339), Machine: machineFacts(), Command: strings.Join(append([]string{"benchcompare"}, os.Args[1:]...), " "), DualStack: c.dualStack}
	logf("bench-compare: %d cores, kernel %s, load %.1f", rep.Machine.Cores, rep.Machine.Kernel, rep.Machine.LoadAvg)
	root, err := lab.FindRepoRoot()
	if err != nil {
		return err
	}
	cache := c.cacheDir
	if cache == "" {
		if cache, err = lab.DefaultCacheDir(); err != nil {
			return err
		}
	}
	var defs []*proxy
	for _, name := range c.proxies {
		switch name {
		case "nftproxy":
			bins := c.nftproxies
			if len(bins) == 0 {
				logf("building nftproxy from %s", root)
				bin, _, err := lab.EnsureProjectBinaries(ctx, root, "", true)
				if err != nil {
					return err
				}
				bins = []namedBin{{"nftproxy", bin}}
			}
			for _, b := range bins {
				d := nftproxyDef(b.path, c.profileDir != "")
				d.name = b.name
				defs = append(defs, d)
			}
		case "kube-proxy-nftables", "kube-proxy-iptables":
			bin, err := lab.EnsureKubeProxy(ctx, root, cache, os.Stderr)
			if err != nil {
				return err
			}
			if name == "kube-proxy-nftables" {
				defs = append(defs, kubeProxyNFTDef(bin))
			} else {
				defs = append(defs, kubeProxyIPTDef(bin))
			}
		default:
			return fmt.Errorf("unknown proxy %q (want nftproxy, kube-proxy-nftables, kube-proxy-iptables)", name)
		}
	}

	logf("starting the lab control plane")
	opts := lab.Options{Prefix: "nftbench-", PerProcess: true, Nodes: 2, NoProxy: true,
		KeepWorkDir: c.keep, Log: os.Stderr, RepoRoot: root, CacheDir: cache}
	if c.hold {
		opts.Prefix, opts.PerProcess = heldPrefix, false
	}
	l, err := lab.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer func() {
		if c.hold {
			l.Detach()
			logf("lab left running: node namespace %s, kubeconfig %s/admin.kubeconfig; stop it with -down",
				l.Node(proxyNode).NS.Name, l.WorkDirPath())
			return
		}
		if err := l.Stop(); err != nil {
			logf("stopping the lab: %v", err)
		}
	}()
	kubeconfig, err := l.AdminKubeconfig()
	if err != nil {
		return err
	}
	node := l.Node(proxyNode)
	client, err := benchClient(kubeconfig, l.Node(otherNode).NS)
	if err != nil {
		return err
	}
	pr, err := newProbe(node.NS)
	if err != nil {
		return err
	}
	defer pr.Close()
	cp, err := l.NS("cp")
	if err != nil {
		return err
	}
	h := &harness{
		env: &nodeEnv{node: node, probe: pr}, kubeconfig: kubeconfig, profileDir: c.profileDir, logDir: l.WorkDirPath() + "/logs", m: c.m, log: logf,
		quietLoad: rep.Machine.LoadAvg, idleMax: c.idleMax,
		loader: &loader{client: client, etcd: lab.NewEtcdWriter(cp), m: c.m, workers: c.workers, log: logf, dualStack: c.dualStack},
	}
	steps := schedule(c, defs)
	for i, st := range steps {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if len(h.loader.clusterIP) < st.plan.n {
			logf("loading %d Services × %d endpoints", st.plan.n, c.m)
			if err := h.loader.ensure(ctx, st.plan.n); err != nil {
				return err
			}
		}
		if h.target == nil {
			logf("starting the connection target: a client and two listener pods on %s", proxyNode)
			if h.target, err = newConnTarget(ctx, l, h.loader); err != nil {
				return err
			}
		}
		logf("[%d/%d] %s, N=%d, min-sync-period %s (load %.1f)", i+1, len(steps), st.proxy.name, st.plan.n, st.plan.minSync, loadAvg())
		rep.Runs = append(rep.Runs, h.run(ctx, st.proxy, st.plan))
		if err := writeJSON(c.out, &rep); err != nil {
			return err
		}
	}
	printTable(os.Stdout, &rep)
	plots, err := writePlots(c.out, &rep)
	if err != nil {
		return err
	}
	logf("results written to %s and %s; `make bench-readme` puts them into README.md and docs/performance.md", c.out, strings.Join(plots, ", "))
	return nil
}

func writeJSON(path string, rep *report) error {
	rep.Statistic, rep.Summary = statNote(rep), summarize(rep)
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func machineFacts() machine {
	m := machine{Cores: runtime.NumCPU(), Go: runtime.Version(), LoadAvg: loadAvg()}
	var u syscall.Utsname
	if syscall.Uname(&u) == nil {
		var b []byte
		for _, c := range u.Release {
			if c == 0 {
				break
			}
			b = append(b, byte(c))
		}
		m.Kernel = string(b)
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		m.Memory = strings.Join(strings.Fields(strings.SplitN(string(b), "\n", 2)[0])[1:], " ")
	}
	return m
}

// benchClient is an unthrottled admin client whose connections are made
// inside ns (the harness itself stays in the host namespace, which has no
// route to the lab).
func benchClient(kubeconfig string, ns *netkit.NS) (kubernetes.Interface, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 5000, 10000
	cfg.Dial = lab.DialerIn(ns)
	return kubernetes.NewForConfig(cfg)
}
