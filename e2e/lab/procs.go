package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nftproxy/nftproxy/e2e/netkit"
)

// daemon is a process the lab started; it is always stopped by its own PID.
type daemon struct {
	Name string // e.g. "kube-apiserver", "nftproxy-node-1", "pod-web-1"
	NS   *netkit.NS
	Proc *netkit.Proc
}

// startDaemon starts args inside ns with output to <work>/logs/<name>.log
// and records it, so Stop (and demo-down, via the state file) find it.
func (l *Lab) startDaemon(ns *netkit.NS, name string, args ...string) (*daemon, error) {
	logPath := filepath.Join(l.work, "logs", name+".log")
	p, err := ns.Start(logPath, args...)
	if err != nil {
		return nil, fmt.Errorf("lab: start %s: %w", name, err)
	}
	d := &daemon{Name: name, NS: ns, Proc: p}
	l.mu.Lock()
	l.daemons = append(l.daemons, d)
	l.mu.Unlock()
	l.saveState()
	return d, nil
}

// stopDaemon stops d (SIGTERM, then SIGKILL after timeout) and forgets it.
func (l *Lab) stopDaemon(d *daemon, timeout time.Duration) error {
	err := d.Proc.Stop(timeout)
	l.forgetDaemon(d)
	if err != nil {
		return fmt.Errorf("lab: stop %s: %w", d.Name, err)
	}
	return nil
}

// forgetDaemon drops an exited d from the records (and the state file).
func (l *Lab) forgetDaemon(d *daemon) {
	l.mu.Lock()
	for i, x := range l.daemons {
		if x == d {
			l.daemons = append(l.daemons[:i], l.daemons[i+1:]...)
			break
		}
	}
	l.mu.Unlock()
	l.saveState()
}

// waitUntil polls cond every 50 ms until it reports true, ctx ends, or
// one of the watched daemons exits (then its log tail is in the error, as
// that is almost always the reason).
func waitUntil(ctx context.Context, timeout time.Duration, what string, cond func(context.Context) (bool, error), watch ...*daemon) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		ok, err := cond(ctx)
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		for _, d := range watch {
			if d.Proc.Exited() {
				return fmt.Errorf("lab: waiting for %s: %s exited (%v); log tail:\n%s",
					what, d.Name, d.Proc.Wait(), tailFile(d.Proc.LogPath, 30))
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab: %s not reached within %s (last error: %v)", what, timeout, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// tailFile returns the last n lines of a file (or why it cannot).
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
