package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/PID/stat times (100 on Linux).
const clockTicks = 100

// memKB reads VmHWM (peak RSS) and VmRSS of a process, in kB.
func memKB(pid int) (hwm, rss int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch k {
		case "VmHWM":
			hwm, _ = strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		case "VmRSS":
			rss, _ = strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		}
	}
	return hwm, rss, sc.Err()
}

// cpuSeconds reads user+system CPU of a process and of its waited-for
// children (kube-proxy's nft / iptables-restore runs).
func cpuSeconds(pid int) (self, children float64, err error) {
	user, sys, children, err := cpuSplit(pid)
	return user + sys, children, err
}

// cpuSplit reads the user and system (kernel: netlink, nftables commit)
// CPU of a process, and its children's total.
func cpuSplit(pid int) (user, sys, children float64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	// Fields after the command name, which may contain spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime, stime, cutime, cstime are fields 14-17.
	if len(f) < 15 {
		return 0, 0, 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	num := func(k int) float64 { v, _ := strconv.ParseFloat(f[k-3], 64); return v / clockTicks }
	return num(14), num(15), num(16) + num(17), nil
}

// childWatch samples the children of a process every 20 ms and keeps the
// largest peak RSS any of them reached (kube-proxy runs nft and
// iptables-restore as children; their memory is not in the parent's
// VmHWM). A child living less than 20 ms may be missed; the figure is a
// lower bound.
type childWatch struct {
	pid  int
	stop chan struct{}
	done chan struct{}

	mu      sync.Mutex
	maxHWM  int64 // kB
	seen    map[int]string
	samples int
}

func watchChildren(pid int) *childWatch {
	w := &childWatch{pid: pid, stop: make(chan struct{}), done: make(chan struct{}), seen: map[int]string{}}
	go w.run()
	return w
}

func (w *childWatch) run() {
	defer close(w.done)
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		for _, c := range descendants(w.pid) {
			hwm, _, err := memKB(c)
			if err != nil {
				continue
			}
			comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", c))
			w.mu.Lock()
			w.samples++
			w.seen[c] = strings.TrimSpace(string(comm))
			w.maxHWM = max(w.maxHWM, hwm)
			w.mu.Unlock()
		}
	}
}

// result stops the watch and returns the largest child peak RSS (kB) and
// how many distinct children were seen.
func (w *childWatch) result() (maxHWM int64, children int, names []string) {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	uniq := map[string]bool{}
	for _, n := range w.seen {
		if !uniq[n] {
			uniq[n] = true
			names = append(names, n)
		}
	}
	return w.maxHWM, len(w.seen), names
}

// descendants lists the children and grandchildren of pid (through every
// thread's children file).
func descendants(pid int) []int {
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", p))
		for _, t := range tasks {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", p, t.Name()))
			if err != nil {
				continue
			}
			for _, f := range strings.Fields(string(b)) {
				if c, err := strconv.Atoi(f); err == nil {
					out = append(out, c)
					queue = append(queue, c)
				}
			}
		}
	}
	return out
}

// loadAvg returns the 1-minute load average.
// machineCPU reads the machine's busy and total CPU time over all cores
// (the first line of /proc/stat; busy is all but idle and iowait), in
// ticks (0, 0 when unreadable).
func machineCPU() (busy, total uint64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return 0, 0
	}
	for i, v := range f[1:] {
		n, _ := strconv.ParseUint(v, 10, 64)
		if i >= 8 { // guest time is already in user time
			break
		}
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total
}

func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	v, _ := strconv.ParseFloat(strings.Fields(string(b))[0], 64)
	return v
}
