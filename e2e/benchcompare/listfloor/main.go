// Command listfloor times the bare reads an informer's initial list is made
// of, against a lab holding bench-compare's load (run it inside a node
// namespace of a lab left by `benchcompare -hold`): a protobuf LIST of all
// Services and of all EndpointSlices, one page each, alone and both at
// once, the EndpointSlices in pages (the latest version, and any version
// not older than 1: the apiserver ignores the limit of a list at "0"),
// and the same as streams of initial events (WatchList, what
// client-go 0.37's informers use). Nothing is cached or indexed: what a
// proxy's start needs beyond these times is the proxy's own.
//
//	ip netns exec nftbench-held-node-1 listfloor -kubeconfig /tmp/nftbench-held-work/admin.kubeconfig
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
)

var (
	kubeconfig = flag.String("kubeconfig", "", "the lab's admin kubeconfig")
	runs       = flag.Int("runs", 5, "repetitions of each read (the medians are printed)")
)

func main() {
	flag.Parse()
	if err := run(*kubeconfig, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "listfloor:", err)
		os.Exit(1)
	}
}

// read is one way of getting every object of a kind; it returns how many.
type read func(context.Context) (int, error)

func run(kubeconfig string, runs int) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = -1, 0 // unthrottled: only the reads are timed
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	svcs, slcs := client.CoreV1().Services(""), client.DiscoveryV1().EndpointSlices("")
	listSvcs := func(ctx context.Context) (int, error) {
		l, err := svcs.List(ctx, metav1.ListOptions{})
		if err != nil {
			return 0, err
		}
		return len(l.Items), nil
	}
	listSlices := func(ctx context.Context) (int, error) {
		l, err := slcs.List(ctx, metav1.ListOptions{})
		if err != nil {
			return 0, err
		}
		return len(l.Items), nil
	}
	pagedSlices := func(limit int64, rv string, match metav1.ResourceVersionMatch) read {
		return func(ctx context.Context) (int, error) {
			o := metav1.ListOptions{Limit: limit, ResourceVersion: rv, ResourceVersionMatch: match}
			n := 0
			for {
				l, err := slcs.List(ctx, o)
				if err != nil {
					return n, err
				}
				n += len(l.Items)
				if l.Continue == "" {
					return n, nil
				}
				o = metav1.ListOptions{Limit: limit, Continue: l.Continue}
			}
		}
	}
	streamSvcs := func(ctx context.Context) (int, error) { return stream(ctx, svcs.Watch) }
	streamSlices := func(ctx context.Context) (int, error) { return stream(ctx, slcs.Watch) }
	fmt.Printf("load %s; medians of %d (wall, CPU of this process)\n", loadAvg(), runs)
	for _, c := range []struct {
		name  string
		reads []read
	}{
		{"LIST Services", []read{listSvcs}},
		{"LIST EndpointSlices", []read{listSlices}},
		{"LIST both at once", []read{listSvcs, listSlices}},
		{"LIST EndpointSlices, 500s", []read{pagedSlices(500, "", "")}},
		{"LIST EndpointSlices, 2000s", []read{pagedSlices(2000, "", "")}},
		{"LIST EndpointSlices, 500s ≥1", []read{pagedSlices(500, "1", metav1.ResourceVersionMatchNotOlderThan)}},
		{"WatchList Services", []read{streamSvcs}},
		{"WatchList EndpointSlices", []read{streamSlices}},
		{"WatchList both at once", []read{streamSvcs, streamSlices}},
	} {
		var walls, cpus []time.Duration
		var n int
		for range runs {
			wall, cpu, objs, err := timed(c.reads)
			if err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			walls, cpus, n = append(walls, wall), append(cpus, cpu), objs
		}
		fmt.Printf("%-26s %6d objects  %6.0f ms  CPU %6.0f ms\n", c.name, n, msOf(median(walls)), msOf(median(cpus)))
	}
	return nil
}

// timed runs reads at once and returns the wall time, this process's CPU
// time and the objects read.
func timed(reads []read) (wall, cpu time.Duration, objects int, err error) {
	ctx := context.Background()
	cpu0 := cpuTime()
	start := time.Now()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, r := range reads {
		wg.Go(func() {
			n, e := r(ctx)
			mu.Lock()
			defer mu.Unlock()
			objects += n
			if e != nil {
				err = e
			}
		})
	}
	wg.Wait()
	return time.Since(start), cpuTime() - cpu0, objects, err
}

// stream reads a stream of initial events up to the bookmark that ends it,
// as a reflector with WatchList does.
func stream(ctx context.Context, watchFn func(context.Context, metav1.ListOptions) (watch.Interface, error)) (int, error) {
	w, err := watchFn(ctx, metav1.ListOptions{
		SendInitialEvents:    ptr.To(true),
		ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan,
		AllowWatchBookmarks:  true,
	})
	if err != nil {
		return 0, err
	}
	defer w.Stop()
	n := 0
	for ev := range w.ResultChan() {
		switch ev.Type {
		case watch.Added:
			n++
		case watch.Bookmark:
			return n, nil
		case watch.Error:
			return n, fmt.Errorf("watch error: %v", ev.Object)
		}
	}
	return n, fmt.Errorf("watch ended after %d objects without the initial-events bookmark", n)
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil || len(b) < 14 {
		return "?"
	}
	return string(b[:14])
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func msOf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
