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

	"github.com/nftproxy/nftproxy/e2e/lab"
)

type config struct {
	sizes      []int
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
}

type namedBin struct{ name, path string }

// heldPrefix names the lab -hold leaves running.
const heldPrefix = "nftbench-held-"

func parseFlags() (*config, error) {
	c := &config{}
	sizes := flag.String("n", "1000,10000", "comma-separated numbers of Services")
	big := flag.Bool("big", false, "also measure 50,000 Services")
	flag.IntVar(&c.m, "m", 10, "endpoints per Service")
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
	flag.BoolVar(&c.hold, "hold", false, "leave the lab (prefix nftbench-held-) running with its load after the runs, for experiments; stop it with -down")
	down := flag.Bool("down", false, "stop a lab left by -hold, and exit")
	flag.StringVar(&c.cacheDir, "cache-dir", "", "control-plane binary cache (default the lab's, ~/.cache/nftproxy-lab)")
	flag.Parse()
	if *down {
		if err := lab.Down(heldPrefix); err != nil {
			return nil, err
		}
		os.Exit(0)
	}
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-n: bad size %q", s)
		}
		c.sizes = append(c.sizes, n)
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
	Date    string      `json:"date"`
	Machine machine     `json:"machine"`
	Command string      `json:"command"`
	Runs    []runResult `json:"runs"`
}

type machine struct {
	Cores   int     `json:"cores"`
	Kernel  string  `json:"kernel"`
	Go      string  `json:"go"`
	LoadAvg float64 `json:"loadAvgAtStart"`
	Memory  string  `json:"memory"`
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func run(ctx context.Context, c *config) error {
	rep := report{Date: time.Now().Format(time.RFC3339), Machine: machineFacts(), Command: strings.Join(os.Args, " ")}
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
		loader: &loader{client: client, etcd: lab.NewEtcdWriter(cp), m: c.m, workers: c.workers, log: logf},
	}
	for _, n := range c.sizes {
		logf("loading %d Services × %d endpoints", n, c.m)
		if err := h.loader.ensure(ctx, n); err != nil {
			return err
		}
		for _, d := range defs {
			if d.name == "kube-proxy iptables" && n > c.iptMax {
				logf("  skipping %s at N=%d (-iptables-max %d)", d.name, n, c.iptMax)
				continue
			}
			for r := 0; r < c.runs; r++ {
				pls := []plan{{n: n, minSync: 0, lone: c.changes, lonePause: 200 * time.Millisecond, dumps: true, syncBudget: syncBudget(d, n)}}
				if !c.noMinSync1 {
					pls = append(pls, plan{n: n, minSync: time.Second, lone: c.changes, lonePause: 1200 * time.Millisecond,
						stream: c.changes, syncBudget: syncBudget(d, n)})
				}
				for _, pl := range pls {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					rep.Runs = append(rep.Runs, h.run(ctx, d, pl))
					if err := writeJSON(c.out, &rep); err != nil {
						return err
					}
				}
			}
		}
	}
	printTable(os.Stdout, &rep)
	logf("results written to %s", c.out)
	return nil
}

func syncBudget(p *proxy, n int) time.Duration {
	if p.name == "kube-proxy iptables" {
		return 30 * time.Minute
	}
	return 2*time.Minute + time.Duration(n)*20*time.Millisecond
}

func writeJSON(path string, rep *report) error {
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
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		m.Memory = strings.Join(strings.Fields(strings.SplitN(string(b), "\n", 2)[0])[1:], " ")
	}
	return m
}
