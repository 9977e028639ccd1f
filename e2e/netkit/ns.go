package netkit

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// netnsDir is where `ip netns` keeps the bind mounts that name namespaces.
const netnsDir = "/run/netns"

// ipNetnsMu serialises `ip netns add/delete` within this process: the
// first `ip netns add` on a machine turns /run/netns into a shared mount,
// and concurrent first calls can stack duplicate mounts.
var ipNetnsMu sync.Mutex

// NS is a network namespace created by this package and named like
// `ip netns add` does, i.e. bind-mounted at /run/netns/<Name>, so that
// iproute2, nft -n style tools and `ip netns exec` all see it.
type NS struct {
	// Name is the namespace name (the file name under /run/netns).
	Name string

	// mu is held for reading while the handle is in use (Do, netlink
	// calls) so that Delete cannot close the fd under them; a reused fd
	// number could otherwise point setns at an unrelated namespace.
	mu      sync.RWMutex
	handle  netns.NsHandle // open fd of the namespace; -1 once deleted
	deleted bool
}

// New creates the network namespace name (failing if it already exists)
// and prepares it for tests:
//   - lo is brought up, so loopback traffic works;
//   - ICMP error rate limits are disabled (net.ipv4.icmp_ratelimit and
//     net.ipv6.icmp.ratelimit = 0), so tests that expect many fast
//     "connection refused"/"unreachable" answers are not throttled;
//   - IPv6 duplicate address detection is disabled for all and default
//     interfaces, so IPv6 addresses are usable immediately instead of
//     sitting "tentative" for a second or more.
//
// On any failure the half-built namespace is removed again.
func New(name string) (*NS, error) {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return nil, fmt.Errorf("netkit: invalid namespace name %q", name)
	}
	// Refuse up front rather than relying on ip's message: a stale
	// namespace from another run must never be silently reused.
	if _, err := os.Stat(filepath.Join(netnsDir, name)); err == nil {
		return nil, fmt.Errorf("netkit: namespace %q already exists", name)
	}
	ipNetnsMu.Lock()
	out, err := exec.Command("ip", "netns", "add", name).CombinedOutput()
	ipNetnsMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("netkit: ip netns add %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	h, err := netns.GetFromName(name)
	if err != nil {
		_ = ipNetnsDelete(name)
		return nil, fmt.Errorf("netkit: open namespace %s: %w", name, err)
	}
	n := &NS{Name: name, handle: h}
	if err := n.setup(); err != nil {
		_ = n.Delete()
		return nil, fmt.Errorf("netkit: set up namespace %s: %w", name, err)
	}
	return n, nil
}

// setup applies the test-friendly defaults described on New.
func (n *NS) setup() error {
	err := n.withHandle(func(h *netlink.Handle) error {
		lo, err := h.LinkByName("lo")
		if err != nil {
			return fmt.Errorf("find lo: %w", err)
		}
		if err := h.LinkSetUp(lo); err != nil {
			return fmt.Errorf("set lo up: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, kv := range [][2]string{
		{"net.ipv4.icmp_ratelimit", "0"},
		{"net.ipv6.icmp.ratelimit", "0"},
		{"net.ipv6.conf.all.accept_dad", "0"},
		{"net.ipv6.conf.default.accept_dad", "0"},
	} {
		if err := n.Sysctl(kv[0], kv[1]); err != nil {
			return err
		}
	}
	return nil
}

// String returns the namespace name.
func (n *NS) String() string { return n.Name }

// FD returns the file descriptor of the namespace, e.g. for
// nftables.WithNetNSFd or netlink.NsFd. It stays valid until Delete.
// It returns -1 after Delete.
func (n *NS) FD() int {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return int(n.handle)
}

// Delete kills every process still inside the namespace (other than this
// test process), closes our handle and removes the name. The kernel frees
// the namespace, and with it its interfaces (veth peers included), once
// nothing refers to it any more. Delete is idempotent.
func (n *NS) Delete() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.deleted {
		return nil
	}
	var errs []error
	if ino, err := nsInode(filepath.Join(netnsDir, n.Name)); err == nil {
		if err := killProcsIn(ino); err != nil {
			errs = append(errs, err)
		}
	}
	if n.handle.IsOpen() {
		if err := n.handle.Close(); err != nil {
			errs = append(errs, fmt.Errorf("netkit: close namespace %s: %w", n.Name, err))
		}
	}
	n.handle = netns.None()
	if err := ipNetnsDelete(n.Name); err != nil {
		errs = append(errs, err)
	}
	n.deleted = true
	return errors.Join(errs...)
}

// CleanupPrefix deletes every named namespace whose name starts with
// prefix, first SIGKILLing the processes still inside it. It is meant to
// remove the leftovers of a crashed run before a new run starts, so it
// does not know (or need) the NS values of that run. An empty prefix is
// refused: it would match every namespace on the machine.
func CleanupPrefix(prefix string) error {
	if prefix == "" {
		return errors.New("netkit: CleanupPrefix needs a non-empty prefix")
	}
	entries, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("netkit: list %s: %w", netnsDir, err)
	}
	var errs []error
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		// A name whose mount is gone (stat fails) is still removed by ip.
		if ino, err := nsInode(filepath.Join(netnsDir, e.Name())); err == nil {
			if err := killProcsIn(ino); err != nil {
				errs = append(errs, err)
			}
		}
		if err := ipNetnsDelete(e.Name()); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ipNetnsDelete unmounts and removes /run/netns/name.
func ipNetnsDelete(name string) error {
	ipNetnsMu.Lock()
	defer ipNetnsMu.Unlock()
	out, err := exec.Command("ip", "netns", "delete", name).CombinedOutput()
	if err != nil {
		if _, serr := os.Lstat(filepath.Join(netnsDir, name)); errors.Is(serr, os.ErrNotExist) {
			return nil // already gone: deleting is idempotent
		}
		return fmt.Errorf("netkit: ip netns delete %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// nsID identifies a namespace by the (device, inode) of its nsfs file,
// which is what /proc/<pid>/ns/net resolves to as well.
type nsID struct{ dev, ino uint64 }

func nsInode(path string) (nsID, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return nsID{}, fmt.Errorf("netkit: stat %s: %w", path, err)
	}
	return nsID{dev: uint64(st.Dev), ino: st.Ino}, nil
}

// procsIn lists the PIDs whose main thread is in the namespace id. Our
// own process is excluded: a goroutine of ours may sit in the namespace
// on a locked thread, and we must never kill ourselves.
func procsIn(id nsID) []int {
	dirs, _ := os.ReadDir("/proc")
	var pids []int
	self := os.Getpid()
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == self {
			continue
		}
		// Errors mean the process exited or is a zombie: nothing to kill.
		if got, err := nsInode("/proc/" + d.Name() + "/ns/net"); err == nil && got == id {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killProcsIn SIGKILLs the processes inside namespace id and waits (up to
// 5 s) until none is left, so the namespace can really go away.
func killProcsIn(id nsID) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids := procsIn(id)
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("netkit: processes %v still alive in namespace after SIGKILL", pids)
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Do runs fn on a locked OS thread that has been switched into the
// namespace. Sockets created by fn stay in the namespace after fn
// returns; so do child processes forked by fn.
//
// fn runs on a fresh goroutine: if switching the thread back to its
// original namespace fails, that goroutine exits still locked, which makes
// the Go runtime discard the thread instead of reusing it elsewhere in the
// wrong namespace. fn must not start goroutines that expect to run in the
// namespace: other goroutines run on other threads. fn must not call Do,
// Sysctl or link methods of the same NS (they would wait for Delete's lock
// if a Delete is pending); it does not need to, it is already inside.
func (n *NS) Do(fn func() error) error {
	n.mu.RLock()
	defer n.mu.RUnlock()
	h := n.handle
	if !h.IsOpen() {
		return fmt.Errorf("netkit: namespace %s is deleted", n.Name)
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netkit: get current namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(h); err != nil {
			// setns failed, the thread is unchanged and reusable.
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netkit: enter namespace %s: %w", n.Name, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			// Stay locked: the thread dies with this goroutine.
			errc <- errors.Join(ferr, fmt.Errorf("netkit: leave namespace %s: %w", n.Name, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Exec runs a command inside the namespace via `ip netns exec` and
// returns its combined output. On failure the error includes the output,
// so test logs show why the command failed.
func (n *NS) Exec(args ...string) ([]byte, error) {
	if len(args) == 0 {
		return nil, errors.New("netkit: Exec needs a command")
	}
	full := append([]string{"netns", "exec", n.Name}, args...)
	out, err := exec.Command("ip", full...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("netkit: in %s: %s: %w: %s", n.Name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// Sysctl writes value to the sysctl key inside the namespace. key is
// either dotted ("net.ipv4.ip_forward") or a path below /proc/sys
// ("net/ipv4/conf/eth0.100/forwarding", needed when an interface name
// contains a dot). The write happens from a thread inside the namespace
// because /proc/sys/net shows the namespace of the opening thread.
func (n *NS) Sysctl(key, value string) error {
	path := key
	if !strings.Contains(key, "/") {
		path = strings.ReplaceAll(key, ".", "/")
	}
	path = filepath.Join("/proc/sys", path)
	err := n.Do(func() error {
		return os.WriteFile(path, []byte(value), 0o644)
	})
	if err != nil {
		return fmt.Errorf("netkit: sysctl %s=%s in %s: %w", key, value, n.Name, err)
	}
	return nil
}

// withHandle runs fn with a netlink handle bound to the namespace. A
// fresh handle per call keeps concurrent callers independent.
func (n *NS) withHandle(fn func(h *netlink.Handle) error) error {
	n.mu.RLock()
	defer n.mu.RUnlock()
	nsh := n.handle
	if !nsh.IsOpen() {
		return fmt.Errorf("netkit: namespace %s is deleted", n.Name)
	}
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		return fmt.Errorf("netkit: netlink handle in %s: %w", n.Name, err)
	}
	defer h.Close()
	return fn(h)
}
