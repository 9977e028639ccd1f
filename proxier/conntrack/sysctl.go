package conntrack

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/klog/v2"
	"k8s.io/utils/cpuset"
)

// Sysctls are kube-proxy's conntrack settings (its conntrack.* fields and
// --conntrack-* flags, with the same meaning): kube-proxy writes them at
// start, and some behaviour users rely on depends on them, e.g. a CLOSE_WAIT
// entry of a masqueraded connection must outlive the server's FIN_WAIT
// timeouts (kubernetes#32551), hence the 1 h default. Zero leaves the
// kernel's value alone, as in kube-proxy.
type Sysctls struct {
	// MaxPerCore times the CPU count, at least Min, capped at 2^20, is the
	// nf_conntrack_max wanted; 0 leaves nf_conntrack_max (and Min) alone.
	MaxPerCore, Min int32
	// Timeouts are whole seconds in the kernel; the fraction is dropped.
	TCPEstablishedTimeout, TCPCloseWaitTimeout time.Duration
	// TCPBeLiberal sets nf_conntrack_tcp_be_liberal to 1 (false: as-is).
	TCPBeLiberal                 bool
	UDPTimeout, UDPStreamTimeout time.Duration
}

// KubeProxyDefaults are kube-proxy v1.37's defaults (the UDP timeouts and
// liberal mode are left to the kernel).
func KubeProxyDefaults() Sysctls {
	return Sysctls{MaxPerCore: 32 * 1024, Min: 128 * 1024, TCPEstablishedTimeout: 24 * time.Hour, TCPCloseWaitTimeout: time.Hour}
}

// SysctlRoots are where the settings are read and written; tests point
// them at a directory of their own.
type SysctlRoots struct {
	// ProcSys holds net/netfilter/nf_conntrack_*: per network namespace
	// (the one of the thread that opens the file) except nf_conntrack_max,
	// which only the initial namespace may write.
	ProcSys string
	// Sys holds module/nf_conntrack/parameters/hashsize (global).
	Sys string
	// NumCPU counts the node's CPUs (nil: its online CPUs).
	NumCPU func() int
}

// HostRoots are the real /proc/sys and /sys.
func HostRoots() SysctlRoots { return SysctlRoots{ProcSys: "/proc/sys", Sys: "/sys"} }

// SysctlChange is one value written.
type SysctlChange struct {
	Path     string
	Old, New int
}

// wantedMax is kube-proxy's nf_conntrack_max (getConntrackMax): global, so
// sized by the node's CPUs, not the process's cpuset.
func (s Sysctls) wantedMax(numCPU int) int {
	if s.MaxPerCore <= 0 {
		return 0
	}
	const limit = 1 << 20 // kube-proxy's cap, against huge tables on many cores
	scaled := int(s.MaxPerCore) * numCPU
	switch {
	case scaled > limit:
		return limit
	case scaled > int(s.Min):
		return scaled
	default:
		return int(s.Min)
	}
}

// Apply writes what differs, in kube-proxy's order and with its rules:
// nf_conntrack_max only when it is below the wanted value (never lowered:
// another component may have raised it), then the module's hashsize when
// below max/4, then each timeout that is set. A value already right is not
// written, so an unprivileged process (read-only /proc/sys) succeeds once
// a privileged one has applied the same settings. It stops at the first
// error, as kube-proxy does; the changes made so far are returned.
func (s Sysctls) Apply(r SysctlRoots) ([]SysctlChange, error) {
	var changes []SysctlChange
	set := func(path string, value int, onlyRaise bool) error {
		cur, err := readInt(path)
		if err != nil {
			return err
		}
		if cur == value || (onlyRaise && cur > value) {
			return nil
		}
		if err := writeInt(path, value); err != nil {
			return err
		}
		klog.InfoS("Set conntrack parameter", "path", path, "old", cur, "value", value)
		changes = append(changes, SysctlChange{Path: path, Old: cur, New: value})
		return nil
	}
	netfilter := func(name string) string { return filepath.Join(r.ProcSys, "net/netfilter", name) }
	numCPU := r.NumCPU
	if numCPU == nil {
		numCPU = onlineCPUs
	}
	if max := s.wantedMax(numCPU()); max > 0 {
		if err := set(netfilter("nf_conntrack_max"), max, true); err != nil {
			return changes, err
		}
		hashsize := filepath.Join(r.Sys, "module/nf_conntrack/parameters/hashsize")
		if err := set(hashsize, max/4, true); err != nil {
			return changes, err
		}
	}
	liberal := 0
	if s.TCPBeLiberal {
		liberal = 1
	}
	for _, v := range []struct {
		name  string
		value int // 0: leave alone
	}{
		{"nf_conntrack_tcp_timeout_established", int(s.TCPEstablishedTimeout / time.Second)},
		{"nf_conntrack_tcp_timeout_close_wait", int(s.TCPCloseWaitTimeout / time.Second)},
		{"nf_conntrack_tcp_be_liberal", liberal},
		{"nf_conntrack_udp_timeout", int(s.UDPTimeout / time.Second)},
		{"nf_conntrack_udp_timeout_stream", int(s.UDPStreamTimeout / time.Second)},
	} {
		if v.value > 0 {
			if err := set(netfilter(v.name), v.value, false); err != nil {
				return changes, err
			}
		}
	}
	return changes, nil
}

// ErrReadOnly marks a write refused because the file is read-only where
// we run: /proc/sys in an unprivileged container, or nf_conntrack_max
// outside the initial network namespace.
var ErrReadOnly = errors.New("read-only here")

func readInt(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, fmt.Errorf("reading %s (is the nf_conntrack module loaded?): %w", path, err)
		}
		return 0, fmt.Errorf("reading %s: %w", path, err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", path, err)
	}
	return v, nil
}

func writeInt(path string, v int) error {
	// O_WRONLY without O_CREATE/O_TRUNC: a sysctl file exists or it is not
	// one (and a tmpfs test root behaves the same way).
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err == nil {
		_, err = f.WriteString(strconv.Itoa(v))
		err = errors.Join(err, f.Close())
	}
	if err == nil {
		return nil
	}
	if errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) {
		return fmt.Errorf("writing %d to %s: %w (%w)", v, path, ErrReadOnly, err)
	}
	return fmt.Errorf("writing %d to %s: %w", v, path, err)
}

// onlineCPUs is the node's CPU count (kube-proxy's DetectNumCPU).
func onlineCPUs() int {
	if n, err := cpuset.NumCPU(); err == nil && n > 0 {
		return n
	}
	return runtime.NumCPU()
}
