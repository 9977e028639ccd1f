package instance

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// useTestName gives the test a lock name of its own: unit tests run in the
// host's network namespace, next to any real nftproxy.
func useTestName(t *testing.T) {
	sockName = fmt.Sprintf("@nftproxy-test/%d/%s", os.Getpid(), t.Name())
	t.Cleanup(func() { sockName = Name })
}

func TestSecondHolderIsToldWhoHoldsTheLock(t *testing.T) {
	useTestName(t)
	l, err := TryAcquire(RoleProxy, "node-a")
	if err != nil {
		t.Fatal(err)
	}
	_, err = TryAcquire(RoleCleanup, "node-a")
	var held *HeldError
	if !errors.As(err, &held) {
		t.Fatalf("second TryAcquire: %v, want a HeldError", err)
	}
	h := held.Holder
	if h.Role != RoleProxy || h.PID != os.Getpid() || h.PeerPID != os.Getpid() || h.Node != "node-a" || time.Since(h.Started) > time.Minute {
		t.Errorf("holder %+v", h)
	}
	want := fmt.Sprintf("nftproxy (pid %d, node node-a, running since ", os.Getpid())
	if !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %q, want it to start with %q", err, want)
	}
	l.Release()
	l.Release() // idempotent
	l2, err := TryAcquire(RoleCleanup, "")
	if err != nil {
		t.Fatalf("after Release: %v", err)
	}
	l2.Release()
}

func TestAcquireWaitsForTheHolder(t *testing.T) {
	useTestName(t)
	l, err := TryAcquire(RoleProxy, "node-a")
	if err != nil {
		t.Fatal(err)
	}
	var told []Holder
	got := make(chan error, 1)
	go func() {
		l2, err := Acquire(context.Background(), RoleProxy, "node-a", time.Hour, func(h Holder) { told = append(told, h) })
		l2.Release()
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("Acquire returned while the lock was held: %v", err)
	case <-time.After(3 * pollInterval):
	}
	released := time.Now()
	l.Release()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if d := time.Since(released); d > 2*pollInterval {
		t.Errorf("took over %v after the release", d)
	}
	if len(told) != 1 || told[0].Role != RoleProxy {
		t.Errorf("waiting was told %+v, want the holder once", told)
	}

	l, _ = TryAcquire(RoleProxy, "")
	defer l.Release()
	ctx, cancel := context.WithTimeout(context.Background(), 2*pollInterval)
	defer cancel()
	if _, err := Acquire(ctx, RoleProxy, "", time.Hour, func(Holder) {}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Acquire with an ending context: %v", err)
	}
}

func TestSomeoneElseSquattingTheName(t *testing.T) {
	useTestName(t)
	ln, err := net.Listen("unix", sockName) // listens, never answers
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = TryAcquire(RoleProxy, "")
	var held *HeldError
	if !errors.As(err, &held) || held.Holder.Role != "" {
		t.Fatalf("TryAcquire: %v", err)
	}
	if want := fmt.Sprintf("another process (pid %d) holds", os.Getpid()); !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %q, want it to start with %q", err, want)
	}
}
