package main

import (
	"slices"
	"time"
)

// step is one start of one proxy: the unit of progress and of the JSON.
type step struct {
	proxy *proxy
	plan  plan
}

// schedule orders the runs by growing N (the load only grows): at a
// control-plane size, each proxy runs at min-sync-period 0 (lone,
// connection and burst changes, the rules shown, and the data plane when
// the size is also a data-plane one) and at the default 1 s (lone,
// 100 ms-apart, connection and burst changes); at a data-plane-only size
// it runs once for the data plane. kube-proxy iptables mode is skipped
// above iptMax. With several runs, run r starts with the r-th proxy:
// the first proxy after a load meets a busier machine (the apiserver and
// etcd still settling), so no proxy should always be the one that does.
func schedule(c *config, defs []*proxy) []step {
	sizes := slices.Concat(c.sizes, c.dpSizes)
	slices.Sort(sizes)
	sizes = slices.Compact(sizes)
	var out []step
	for _, n := range sizes {
		control, dp := slices.Contains(c.sizes, n), slices.Contains(c.dpSizes, n)
		for r := 0; r < c.runs; r++ {
			for i := range defs {
				d := defs[(i+r)%len(defs)]
				if d.name == "kube-proxy iptables" && n > c.iptMax {
					continue
				}
				budget := syncBudget(d, n)
				if !control {
					out = append(out, step{d, plan{n: n, syncBudget: budget, dataPlane: true}})
					continue
				}
				burst := min(c.burst, n)
				out = append(out, step{d, plan{n: n, minSync: 0, lone: c.changes, conn: c.changes, lonePause: 200 * time.Millisecond,
					burst: burst, dumps: true, dataPlane: dp, syncBudget: budget}})
				if !c.noMinSync1 {
					out = append(out, step{d, plan{n: n, minSync: time.Second, lone: c.changes, conn: c.changes, lonePause: 1200 * time.Millisecond,
						stream: c.changes, burst: burst, syncBudget: budget}})
				}
			}
		}
	}
	return out
}

func syncBudget(p *proxy, n int) time.Duration {
	if p.name == "kube-proxy iptables" {
		return 30 * time.Minute
	}
	return 2*time.Minute + time.Duration(n)*20*time.Millisecond
}
