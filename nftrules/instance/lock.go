// Package instance makes sure that one nftproxy at a time owns the
// nftables tables of a network namespace.
//
// The lock is an abstract unix socket (no file: the name lives in the
// network namespace, as the tables do). Binding it is taking the lock; the
// kernel frees the name when the holder's socket closes, whatever way the
// process ends, so a crash leaves no stale lock. Pods with host network
// share the node's network namespace and so see each other's abstract
// sockets without any hostPath volume; processes run with `ip netns exec`
// in a test namespace see only that namespace's.
//
// The holder answers every connection with one JSON line describing
// itself, so that the others can say who holds the lock.
package instance

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Name is the abstract socket name: "@nftproxy/tables" in `ss -xlp`.
const Name = "@nftproxy/tables"

// sockName is Name; unit tests, which run in the host's namespace, use
// names of their own.
var sockName = Name

// Roles of a holder.
const (
	RoleProxy   = "proxy"
	RoleCleanup = "cleanup"
)

// Holder describes the process holding the lock, as it tells others.
type Holder struct {
	Role    string    `json:"role"`
	PID     int       `json:"pid"` // in the holder's own PID namespace
	Node    string    `json:"node,omitempty"`
	Started time.Time `json:"started"`
	// PeerPID is the holder's PID as the asker sees it (SO_PEERCRED; 0
	// when the holder is in a PID namespace the asker cannot see).
	PeerPID int `json:"-"`
}

// String describes the holder for messages: "nftproxy (pid 4711, node
// node-a, running since 2026-01-02T15:04:05Z)".
func (h Holder) String() string {
	what := "nftproxy"
	if h.Role == RoleCleanup {
		what = "nftproxy --cleanup"
	}
	if h.Role == "" { // it did not answer: not an nftproxy, or an old one
		what = "another process"
	}
	var facts []string
	switch {
	case h.PeerPID != 0:
		facts = append(facts, fmt.Sprintf("pid %d", h.PeerPID))
	case h.PID != 0:
		facts = append(facts, fmt.Sprintf("pid %d in its own PID namespace", h.PID))
	}
	if h.Node != "" {
		facts = append(facts, "node "+h.Node)
	}
	if !h.Started.IsZero() {
		facts = append(facts, "running since "+h.Started.UTC().Format(time.RFC3339))
	}
	if len(facts) == 0 {
		return what
	}
	return what + " (" + strings.Join(facts, ", ") + ")"
}

// HeldError is returned by TryAcquire when someone else holds the lock.
type HeldError struct{ Holder Holder }

func (e *HeldError) Error() string {
	return fmt.Sprintf("%s holds this network namespace's nftproxy lock (%s)", e.Holder, sockName)
}

// Lock is a held lock; Release it (or exit) to let the next one in.
type Lock struct {
	ln   *net.UnixListener
	self []byte // the Holder line served to askers
	wg   sync.WaitGroup
	once sync.Once
}

// TryAcquire takes the lock for role, or returns a *HeldError naming the
// holder.
func TryAcquire(role, node string) (*Lock, error) {
	self, err := json.Marshal(Holder{Role: role, PID: os.Getpid(), Node: node, Started: time.Now()})
	if err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sockName, Net: "unix"})
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, &HeldError{Holder: ask()}
		}
		return nil, fmt.Errorf("take the nftproxy lock (abstract unix socket %s): %w", sockName, err)
	}
	l := &Lock{ln: ln, self: append(self, '\n')}
	l.wg.Add(1)
	go l.serve()
	return l, nil
}

// Acquire takes the lock, waiting while someone else holds it: waiting is
// called once at first and then every logEvery with the current holder.
// It returns ctx's error if ctx ends first.
func Acquire(ctx context.Context, role, node string, logEvery time.Duration, waiting func(Holder)) (*Lock, error) {
	var lastLog time.Time
	for {
		l, err := TryAcquire(role, node)
		var held *HeldError
		if !errors.As(err, &held) {
			return l, err
		}
		if now := time.Now(); lastLog.IsZero() || now.Sub(lastLog) >= logEvery {
			waiting(held.Holder)
			lastLog = now
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(pollInterval):
		}
	}
}

// pollInterval is how often a waiting instance tries again: it takes over
// at most this long after the holder is gone.
const pollInterval = 200 * time.Millisecond

// serve answers askers until the lock is released.
func (l *Lock) serve() {
	defer l.wg.Done()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return // released
		}
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.Write(l.self)
		_ = c.Close()
	}
}

// Release frees the lock. It is idempotent.
func (l *Lock) Release() {
	if l == nil {
		return
	}
	l.once.Do(func() {
		_ = l.ln.Close()
		l.wg.Wait()
	})
}

// ask connects to the holder and reads what it says about itself; a
// holder that does not answer (a foreign socket squatting the name, or
// one that is just exiting) gives what SO_PEERCRED tells, if anything.
func ask() Holder {
	var h Holder
	c, err := net.DialTimeout("unix", sockName, time.Second)
	if err != nil {
		return h
	}
	defer c.Close()
	if raw, err := c.(*net.UnixConn).SyscallConn(); err == nil {
		_ = raw.Control(func(fd uintptr) {
			if cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
				h.PeerPID = int(cred.Pid)
			}
		})
	}
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	line, err := bufio.NewReader(c).ReadBytes('\n')
	if err == nil {
		peer := h.PeerPID
		if json.Unmarshal(line, &h) != nil {
			h = Holder{}
		}
		h.PeerPID = peer
	}
	return h
}
