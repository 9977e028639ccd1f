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

// recordPauses makes retryUnreachable's pauses instant and records them.
func recordPauses(t *testing.T) *[]time.Duration {
	var got []time.Duration
	orig := pause
	pause = func(ctx context.Context, d time.Duration) bool {
		got = append(got, d)
		return ctx.Err() == nil
	}
	t.Cleanup(func() { pause = orig })
	return &got
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
	recordPauses(t)
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
	recordPauses(t)
	forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: "services"}, "", errors.New(`clusterrole "nftproxy" not found`))
	calls := 0
	v, err := retryUnreachable(context.Background(), failing(&calls, refused, forbidden, forbidden))
	if err != nil || v != "answer" || calls != 4 {
		t.Errorf("got %q, %v after %d calls; want the answer after 4 calls", v, err, calls)
	}
}

func TestRetryUnreachablePassesAPIErrors(t *testing.T) {
	recordPauses(t)
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

// The pause between attempts grows from retryFirst and stays at most
// retryMax plus half of it as jitter, however long the apiserver is away:
// its return is seen within 1.5 s.
func TestRetryUnreachablePausesAreBounded(t *testing.T) {
	pauses := recordPauses(t)
	calls := 0
	_, _ = retryUnreachable(context.Background(), func() (string, error) {
		if calls++; calls < 40 {
			return "", refused
		}
		return "", nil
	})
	if len(*pauses) != 39 {
		t.Fatalf("%d pauses for 39 failed attempts", len(*pauses))
	}
	for i, d := range *pauses {
		if d > retryMax+retryMax/2 {
			t.Errorf("pause %d: %v, want at most %v", i, d, retryMax+retryMax/2)
		}
	}
	if first := (*pauses)[0]; first > retryFirst+retryFirst/2 {
		t.Errorf("first pause %v, want about %v", first, retryFirst)
	}
}

func TestRetryUnreachableHonoursRetryAfter(t *testing.T) {
	pauses := recordPauses(t)
	calls := 0
	if _, err := retryUnreachable(context.Background(), failing(&calls, apierrors.NewTooManyRequests("storage is (re)initializing", 3))); err != nil {
		t.Fatal(err)
	}
	if len(*pauses) != 1 || (*pauses)[0] < 3*time.Second {
		t.Errorf("pauses %v, want one of the 3 s the apiserver asked for", *pauses)
	}
}
