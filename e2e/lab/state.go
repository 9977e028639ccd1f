package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nftproxy/nftproxy/e2e/netkit"
)

// state is what a lab leaves on disk so another process (make demo-down,
// or the next Start after a crash) can stop it by PID.
type state struct {
	Prefix     string
	Work       string
	Daemons    []stateProc
	Namespaces []string
}

type stateProc struct {
	Name string
	PID  int
	Exe  string // to make sure a PID was not recycled by another program
}

func stateFile(work string) string { return filepath.Join(work, "state.json") }

// saveState rewrites the state file; errors only lose the crash-recovery
// aid, so they are reported on the log rather than failing the caller.
func (l *Lab) saveState() {
	// One writer at a time: pods start concurrently and share the temp name.
	l.saveMu.Lock()
	defer l.saveMu.Unlock()
	l.mu.Lock()
	st := state{Prefix: l.opts.Prefix, Work: l.work}
	for _, d := range l.daemons {
		st.Daemons = append(st.Daemons, stateProc{Name: d.Name, PID: d.Proc.PID, Exe: d.Proc.Args[0]})
	}
	for _, ns := range l.namespaces {
		st.Namespaces = append(st.Namespaces, ns.Name)
	}
	l.mu.Unlock()
	b, _ := json.MarshalIndent(st, "", "  ")
	tmp := stateFile(l.work) + ".tmp"
	err := os.WriteFile(tmp, b, 0o644)
	if err == nil {
		err = os.Rename(tmp, stateFile(l.work))
	}
	if err != nil {
		fmt.Fprintf(l.opts.Log, "lab: save state: %v\n", err)
	}
}

// Down stops a lab left running by another process (make demo-down): it
// stops the recorded processes by PID, deletes every namespace with the
// prefix and removes the work directory.
func Down(prefix string) error {
	work := WorkDir(prefix)
	var errs []error
	if err := stopRecorded(work); err != nil {
		errs = append(errs, err)
	}
	if err := netkit.CleanupPrefix(prefix); err != nil {
		errs = append(errs, err)
	}
	// Pods of real-kubelet nodes: in pod network namespaces, found by
	// their nodes' cgroups.
	for _, root := range findCgroupRoots(prefix) {
		if err := killCgroup(root); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		if err := os.RemoveAll(work); err != nil {
			errs = append(errs, fmt.Errorf("lab: remove %s: %w", work, err))
		}
	}
	return errors.Join(errs...)
}

// removeLeftovers cleans up after a crashed run with the same prefix. For
// per-process labs (prefix <base><pid>-) it removes the labs of processes
// that are gone and leaves those of live processes alone.
func removeLeftovers(prefix string, perProcess bool) error {
	prefixes := []string{prefix}
	if perProcess {
		prefixes = deadProcessPrefixes(strings.TrimSuffix(prefix, fmt.Sprintf("%d-", os.Getpid())))
		prefixes = append(prefixes, prefix) // a previous lab of this process
	}
	for _, p := range prefixes {
		if err := Down(p); err != nil {
			return fmt.Errorf("lab: remove leftovers of a previous %s lab: %w", p, err)
		}
	}
	return nil
}

// deadProcessPrefixes lists <base><pid>- prefixes of existing namespaces
// and work dirs whose pid no longer runs.
func deadProcessPrefixes(base string) []string {
	names, _ := filepath.Glob("/run/netns/" + base + "*")
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), base+"*-work"))
	seen := map[string]bool{}
	var out []string
	for _, n := range append(names, dirs...) {
		rest := strings.TrimPrefix(filepath.Base(n), base)
		pidStr, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if !ok || err != nil || pid == os.Getpid() {
			continue
		}
		if !isZombie(pid) {
			continue // that test process still runs its lab (isZombie: gone or dead)
		}
		p := fmt.Sprintf("%s%d-", base, pid)
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// stopRecorded SIGTERMs the processes in the state file of work (those
// whose executable still matches), in reverse order, and SIGKILLs what is
// left after 5 s.
func stopRecorded(work string) error {
	b, err := os.ReadFile(stateFile(work))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("lab: read state: %w", err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("lab: parse %s: %w", stateFile(work), err)
	}
	var alive []int
	for i := len(st.Daemons) - 1; i >= 0; i-- {
		p := st.Daemons[i]
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", p.PID)); err == nil && strings.TrimSuffix(exe, " (deleted)") == p.Exe {
			_ = syscall.Kill(p.PID, syscall.SIGTERM)
			alive = append(alive, p.PID)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range alive {
		for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) && !isZombie(pid) {
			time.Sleep(20 * time.Millisecond)
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return nil
}

// isZombie reports whether pid is gone or a zombie (killed, not yet reaped).
func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] == 'Z'
}

// Live labs of this process, stopped on SIGINT/SIGTERM: a Ctrl-C during
// `go test` or `make demo` must not leave processes and namespaces behind.
var (
	liveMu  sync.Mutex
	live    = map[*Lab]bool{}
	sigOnce sync.Once
)

func register(l *Lab) {
	liveMu.Lock()
	live[l] = true
	liveMu.Unlock()
	sigOnce.Do(func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
		go func() {
			s := <-ch
			fmt.Fprintf(os.Stderr, "lab: %v: stopping labs\n", s)
			liveMu.Lock()
			labs := make([]*Lab, 0, len(live))
			for l := range live {
				labs = append(labs, l)
			}
			liveMu.Unlock()
			for _, l := range labs {
				if err := l.Stop(); err != nil {
					fmt.Fprintf(os.Stderr, "lab: stop: %v\n", err)
				}
			}
			os.Exit(130)
		}()
	})
}

func unregister(l *Lab) {
	liveMu.Lock()
	delete(live, l)
	liveMu.Unlock()
}

// Detach leaves the lab running after this process exits (make demo): it
// is no longer stopped on signals, and Down(prefix) stops it later using
// the state file.
func (l *Lab) Detach() {
	unregister(l)
	l.saveState()
}
