package netkit

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Proc is a long-running process started inside a namespace by Start.
// PID is the process's own PID (not that of an `ip netns exec` wrapper,
// which forks and would leave the daemon running when killed).
type Proc struct {
	PID     int
	Args    []string
	LogPath string

	cmd  *exec.Cmd
	done chan struct{}
	err  error // result of Wait, valid once done is closed
}

// Start starts args as a daemon inside the namespace, with stdout and
// stderr appended to logPath and stdin from /dev/null.
//
// The process is forked from a thread switched into the namespace (Do),
// so it inherits the namespace directly and its PID is known. Its mount
// namespace is the host's (unlike `ip netns exec`, /sys is not remounted),
// which does not matter to netlink-based programs. The caller must Stop
// it; Delete of the namespace also kills it.
func (n *NS) Start(logPath string, args ...string) (*Proc, error) {
	if len(args) == 0 {
		return nil, errors.New("netkit: Start needs a command")
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("netkit: open log for %s: %w", args[0], err)
	}
	// The child has its own copy of the descriptor.
	defer logf.Close()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout = logf // an *os.File is passed as is: no copying goroutine
	cmd.Stderr = logf
	err = n.Do(func() error {
		// exec forks from the current, locked thread: the child starts
		// in this thread's network namespace.
		return cmd.Start()
	})
	if err != nil {
		return nil, fmt.Errorf("netkit: start %s in %s: %w", strings.Join(args, " "), n.Name, err)
	}
	p := &Proc{PID: cmd.Process.Pid, Args: args, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Done is closed when the process has exited (and been reaped).
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait blocks until the process exits and returns its exit status as
// exec.Cmd.Wait does (nil for exit code 0, *exec.ExitError otherwise).
func (p *Proc) Wait() error {
	<-p.done
	return p.err
}

// ExitState returns the process state after exit, or nil while it runs.
func (p *Proc) ExitState() *os.ProcessState {
	if !p.Exited() {
		return nil
	}
	return p.cmd.ProcessState
}

// Signal sends sig to the process. os.Process signals through a pidfd, so
// a recycled PID can never be hit by mistake.
func (p *Proc) Signal(sig os.Signal) error {
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("netkit: signal %v to %d (%s): %w", sig, p.PID, p.Args[0], err)
	}
	return nil
}

// Stop sends SIGTERM, waits up to timeout for the process to exit, then
// sends SIGKILL and waits again. It returns nil once the process is gone
// (however it exited: a daemon that dies of SIGTERM is a normal stop);
// use Wait/ExitState for the exit status. Stop of an exited process is a
// no-op.
func (p *Proc) Stop(timeout time.Duration) error {
	if p.Exited() {
		return nil
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(timeout):
	}
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("netkit: process %d (%s) survived SIGKILL for 10s", p.PID, p.Args[0])
	}
}
