package informers

import (
	"context"
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// fastRetries makes retryUnreachable's pauses tiny for the test.
func fastRetries(t *testing.T) {
	first, max := retryFirst, retryMax
	retryFirst, retryMax = time.Millisecond, 4*time.Millisecond
	t.Cleanup(func() { retryFirst, retryMax = first, max })
}

var refused = &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}

// failing returns fn failing with errs in turn, then succeeding; calls
// counts the calls.
func failing(calls *int, errs ...error) func() (string, error) {
	return func() (string, error) {
		*calls++
		if *calls <= len(errs) {
			return "", errs[*calls-1]
		}
		return "answer", nil
	}
}

func TestRetryUnreachableWaitsForTheAPIServer(t *testing.T) {
	fastRetries(t)
	unavailable := apierrors.NewServiceUnavailable("apiserver starting")
	initializing := apierrors.NewTooManyRequests("storage is (re)initializing", 0)
	calls := 0
	v, err := retryUnreachable(context.Background(), failing(&calls, refused, refused, unavailable, initializing, errors.New("http2: client connection lost")))
	if err != nil || v != "answer" || calls != 6 {
		t.Errorf("got %q, %v after %d calls; want the answer after 6 calls (5 unreachable)", v, err, calls)
	}
}

// A restarted apiserver denies access until its authorizer has loaded
// RBAC: right after an outage that is retried as well.
func TestRetryUnreachableWaitsForTheAuthorizerAfterAnOutage(t *testing.T) {
	fastRetries(t)
	forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: "services"}, "", errors.New(`clusterrole "nftproxy" not found`))
	calls := 0
	v, err := retryUnreachable(context.Background(), failing(&calls, refused, forbidden, forbidden))
	if err != nil || v != "answer" || calls != 4 {
		t.Errorf("got %q, %v after %d calls; want the answer after 4 calls", v, err, calls)
	}
}

func TestRetryUnreachablePassesAPIErrors(t *testing.T) {
	fastRetries(t)
	for _, apiErr := range []error{
		apierrors.NewForbidden(schema.GroupResource{Resource: "services"}, "", errors.New("RBAC")),
		apierrors.NewResourceExpired("too old resource version"),
		apierrors.NewInternalError(errors.New("boom")),
	} {
		calls := 0
		if _, err := retryUnreachable(context.Background(), failing(&calls, apiErr)); err != apiErr || calls != 1 {
			t.Errorf("%v: got %v after %d calls, want it returned at once (the reflector handles it)", apiErr, err, calls)
		}
	}
}

func TestRetryUnreachableStopsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	done := make(chan error, 1)
	go func() {
		_, err := retryUnreachable(ctx, func() (string, error) {
			calls++
			return "", refused
		})
		done <- err
	}()
	time.Sleep(50 * time.Millisecond) // some retries, at the real pacing
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("got %v, want the last error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("retryUnreachable did not return after its context ended")
	}
}

// The pause between attempts is bounded: the apiserver's return is seen
// within retryMax (plus jitter), however long it was away.
func TestRetryUnreachablePausesAreBounded(t *testing.T) {
	fastRetries(t)
	retryFirst, retryMax = 2*time.Millisecond, 20*time.Millisecond
	var times []time.Time
	_, _ = retryUnreachable(context.Background(), func() (string, error) {
		times = append(times, time.Now())
		if len(times) < 12 {
			return "", refused
		}
		return "", nil
	})
	for i := 1; i < len(times); i++ {
		if gap := times[i].Sub(times[i-1]); gap > 30*time.Millisecond+200*time.Millisecond {
			t.Errorf("attempt %d came %v after the previous one, want at most retryMax and half of it as jitter (30ms, plus scheduling slack)", i, gap)
		}
	}
}

func TestRetryUnreachableHonoursRetryAfter(t *testing.T) {
	fastRetries(t)
	calls := 0
	start := time.Now()
	if _, err := retryUnreachable(context.Background(), failing(&calls, apierrors.NewTooManyRequests("storage is (re)initializing", 1))); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < time.Second {
		t.Errorf("retried after %v, want the 1 s the apiserver asked for", took)
	}
}
