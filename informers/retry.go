package informers

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/klog/v2"
)

// Why list and watch calls retry by themselves: when a watch breaks,
// client-go's reflector waits before it lists or watches again, and each
// failed attempt (refused, or 429) doubles the wait (0.8 s up to 30 s, with as much jitter
// again; it resets only after two quiet minutes). After an apiserver
// restart or a partition of half a minute the reflector is waiting up to
// a minute when the apiserver returns, and every change made meanwhile
// reaches the kernel that late. So a call that cannot reach the apiserver
// does not fail: it is retried here at a short, bounded interval until
// the apiserver answers or the informers stop, and the reflector never
// learns about the outage. (One node then tries about once a second per
// informer while the apiserver is away; the reflector's backoff would
// have tried every 30 to 60 s. After an outage the apiserver's return is
// seen within 1.5 s.)
//
// Hiding failed calls is not enough: the reflector also waits whenever
// its list-and-watch returns, which it does when a watch ends with an
// error (the apiserver's connection broke) or with its resourceVersion
// expired (a restarted apiserver's new watch cache), and each of those
// steps the same backoff. Three restarts in two minutes had it asleep
// through the third outage and 5 s past it. So the watch the reflector
// gets outlives its connection (resume.go): re-opened from the last
// resourceVersion delivered, and after an expiry relisted by us, the
// differences delivered as watch events. The reflector's list-and-watch
// returns only for errors an answering apiserver keeps returning.

// Retry pacing of an unreachable apiserver.
var (
	retryFirst = 250 * time.Millisecond
	retryMax   = time.Second
)

// authWarmup is how long an apiserver that was just unreachable may deny
// access: a restarted apiserver serves requests before its authorizer has
// loaded the RBAC objects, and answers 403 meanwhile (seen for ~3 s).
const authWarmup = 30 * time.Second

// retryUnreachable calls fn until it reaches the apiserver (any other
// answer, API errors included, ends the retries) or ctx ends. Once a call
// found the apiserver unreachable, access denied (401, 403) is retried
// too, for authWarmup.
func retryUnreachable[T any](ctx context.Context, fn func() (T, error)) (T, error) {
	delay := retryFirst
	var since, denied time.Time // since: unreachable; denied: 401/403 after that
	for {
		start := time.Now()
		v, err := fn()
		if err == nil && !since.IsZero() {
			klog.InfoS("Reached the apiserver again", "after", time.Since(since).Round(time.Millisecond))
		}
		if err == nil || ctx.Err() != nil {
			return v, err
		}
		switch {
		case unreachable(err):
			if since.IsZero() {
				since = start
				klog.InfoS("Cannot reach the apiserver; retrying", "err", err)
			}
		case !since.IsZero() && (apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err)):
			if denied.IsZero() {
				denied = start
				delay = retryFirst // it answers again: start over
				klog.InfoS("The apiserver is back but denies access; retrying while its authorizer starts", "err", err)
			}
			if time.Since(denied) > authWarmup {
				return v, err
			}
		default:
			return v, err
		}
		// An attempt that itself waited (a dial timing out in a silent
		// partition) is followed by the next one at once: the pause is
		// counted from the attempt's start.
		wait := delay + rand.N(delay/2) - time.Since(start)
		if after, ok := apierrors.SuggestsClientDelay(err); ok {
			wait = max(wait, time.Duration(after)*time.Second)
		}
		delay = min(2*delay, retryMax)
		if wait > 0 && !pause(ctx, wait) {
			return v, err
		}
	}
}

// pause waits for d or until ctx ends (then false). Tests replace it.
var pause = func(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// unreachable reports whether err means the apiserver did not serve the
// call: a transport error (refused, reset, timed out, TLS) rather than an
// API status, or the apiserver saying it cannot serve yet (503, or 429:
// a restarted apiserver answers watches so until its watch cache is
// filled, and the reflector would back off on it too). A Retry-After
// the apiserver sends is honoured.
func unreachable(err error) bool {
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		return apierrors.IsServiceUnavailable(err) || apierrors.IsTooManyRequests(err)
	}
	return true
}
