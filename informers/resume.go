package informers

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"time"

	discovery "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// Why a watch outlives its connection: see retry.go. The reflector
// backs off before its next list and watch not only after a failed call
// but whenever its list-and-watch returns, and it returns when a watch
// ends with an error (a broken connection shows as one) or expires (a
// restarted apiserver no longer has our resourceVersion). So the watch
// handed to the reflector does not end with its connection: it is
// re-opened from the last resourceVersion delivered, and when that
// version is gone the resumer lists and delivers the differences to
// the cache as events (changed and new objects, deletions, then a
// bookmark at the list's version) before watching from the list. The
// reflector sees one long watch and never backs off. What is passed on:
// the end of a stream of initial events (the reflector restarts those
// itself, without backoff) and errors that an answering apiserver keeps
// returning (the reflector's backoff suits those).

// resumer is one informer's lister and watcher: list and watch are its
// calls to the apiserver (retrying an unreachable one), known is what
// the informer's reflector was given, the basis of the differences.
type resumer struct {
	list func(context.Context, metav1.ListOptions) (runtime.Object, error)
	// more reads a list's continuation pages (see listPaged); nil:
	// list does.
	more    func(context.Context, metav1.ListOptions) (runtime.Object, error)
	watch   func(context.Context, metav1.ListOptions) (watch.Interface, error)
	objType reflect.Type // of the informer's objects (a pointer type)

	mu    sync.Mutex
	known map[string]knownObject

	// listed, if set, is told once when the first complete list (a LIST
	// or a stream of initial events) has arrived: the start-up timeline.
	listed     func(objects int)
	listedOnce sync.Once
}

// firstList reports the first complete list to listed.
func (r *resumer) firstList(objects int) {
	if r.listed != nil {
		r.listedOnce.Do(func() { r.listed(objects) })
	}
}

// knownObject is what a deletion needs of an object the reflector was
// given: handlers read a deleted slice's Service from its service-name
// label (kept as the string alone: the cache keeps objects packed, so a
// labels map here would be the only one left of each slice).
type knownObject struct {
	rv      string
	service string
}

func knownOf(m metav1.Object) knownObject {
	return knownObject{rv: m.GetResourceVersion(), service: m.GetLabels()[discovery.LabelServiceName]}
}

func newResumer(obj runtime.Object, list func(context.Context, metav1.ListOptions) (runtime.Object, error),
	watchFn func(context.Context, metav1.ListOptions) (watch.Interface, error)) *resumer {
	return &resumer{list: list, watch: watchFn, objType: reflect.TypeOf(obj), known: map[string]knownObject{}}
}

// List is the reflector's list: its result replaces what it knew. The
// reflector's own paging (pages of 500, or none when it asks for
// resourceVersion 0) is replaced by listPaged's: the reflector gets the
// whole list in one answer, and known must be the whole list.
func (r *resumer) List(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
	o.Limit, o.Continue = 0, ""
	l, err := r.listPaged(ctx, o)
	if err != nil {
		return nil, err
	}
	known := make(map[string]knownObject, meta.LenList(l))
	// EachListItem, not ExtractList: no copy of every item to read keys.
	err = meta.EachListItem(l, func(o runtime.Object) error {
		if key, m, ok := keyOf(o); ok {
			known[key] = knownOf(m)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading list: %w", err)
	}
	r.mu.Lock()
	r.known = known
	r.mu.Unlock()
	r.firstList(meta.LenList(l))
	return l, nil
}

// listPage is how many objects a list reads per call: each page is
// trimmed as it arrives, so the untrimmed objects alive at once are a
// page's, not 10,000 (an untrimmed EndpointSlice list at 10,000 Services
// was ~60-85 MB live while decoded, trimmed ~20 MB). At 10,000 Services
// pages of 1,000 programmed the rules as soon as one whole list did
// (1.76 s from the start, median of 3), pages of 500 0.3 s later.
const listPage = 1000

// listPaged reads the whole list in pages, trimming each page's items
// in place, and returns it as one list (no continue token: the
// reflector sees one complete answer, as known must be). A continue
// token that expired restarts the list unpaged.
func (r *resumer) listPaged(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
	first := o
	o.Limit, o.Continue = listPage, ""
	if o.ResourceVersion == "0" {
		// The reflector's first list asks for "0" (any version, from
		// the apiserver's cache), and the apiserver ignores the limit
		// of such a list: it would answer whole. "" (the latest
		// version) is served in pages, from the cache's snapshot
		// where the apiserver keeps one.
		o.ResourceVersion, o.ResourceVersionMatch = "", ""
	}
	all, err := r.list(ctx, o)
	if err != nil {
		return nil, err
	}
	trimListItems(all)
	next := continueOf(all)
	for next != "" {
		o.Continue, o.ResourceVersion, o.ResourceVersionMatch = next, "", ""
		page, err := r.continued(ctx, o)
		if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
			klog.V(2).InfoS("List continuation expired, listing whole", "type", r.objType, "err", err)
			all, err = r.list(ctx, first)
			if err != nil {
				return nil, err
			}
			trimListItems(all)
			break
		}
		if err != nil {
			return nil, err
		}
		trimListItems(page)
		if !appendListItems(all, page) {
			return nil, fmt.Errorf("list of %T cannot be paged", all)
		}
		next = continueOf(page)
	}
	if m, err := meta.ListAccessor(all); err == nil {
		m.SetContinue("")
		m.SetRemainingItemCount(nil)
	}
	return all, nil
}

// continued reads a continuation page.
func (r *resumer) continued(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
	if r.more != nil {
		return r.more(ctx, o)
	}
	return r.list(ctx, o)
}

// continueOf is l's continue token ("" for the last page).
func continueOf(l runtime.Object) string {
	m, err := meta.ListAccessor(l)
	if err != nil {
		return ""
	}
	return m.GetContinue()
}

// Watch opens a watch that resumes after its connection is lost.
func (r *resumer) Watch(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
	inner, err := r.watch(ctx, o)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	rw := &resumingWatch{r: r, opts: o, result: make(chan watch.Event), cancel: cancel, done: make(chan struct{})}
	go rw.run(ctx, inner)
	return rw, nil
}

type resumingWatch struct {
	r      *resumer
	opts   metav1.ListOptions
	result chan watch.Event
	cancel context.CancelFunc
	done   chan struct{} // closed when run returned
}

func (w *resumingWatch) ResultChan() <-chan watch.Event { return w.result }

// Stop ends the watch and waits for it: every call it makes ends with
// its context, and informers that stopped leave nothing running.
func (w *resumingWatch) Stop() {
	w.cancel()
	<-w.done
}

// run forwards inner's events and those of the watches after it until
// the reflector stops the watch.
func (w *resumingWatch) run(ctx context.Context, inner watch.Interface) {
	defer close(w.done)
	defer close(w.result)
	defer w.cancel()
	initial := w.opts.SendInitialEvents != nil && *w.opts.SendInitialEvents
	rv := w.opts.ResourceVersion
	delay := retryFirst
	for {
		start := time.Now()
		n, err := w.forward(ctx, inner, &initial, &rv)
		inner.Stop()
		if ctx.Err() != nil {
			return
		}
		if initial {
			// The reflector has not got the whole state yet: it starts
			// a new stream of initial events itself.
			if err != nil {
				w.send(ctx, errorEvent(err))
			}
			return
		}
		if n == 0 && time.Since(start) < time.Second && !gone(err) {
			// A watch that ends at once, again and again, is retried
			// at the pace of an unreachable apiserver, not in a loop.
			if !pause(ctx, delay) {
				return
			}
			delay = min(2*delay, retryMax)
		} else {
			delay = retryFirst
		}
		klog.V(2).InfoS("Watch ended; resuming", "type", w.r.objType, "resourceVersion", rv, "err", err)
		for {
			if gone(err) {
				if rv, err = w.relist(ctx); err != nil {
					break
				}
			}
			o := w.opts
			o.ResourceVersion, o.SendInitialEvents, o.ResourceVersionMatch, o.AllowWatchBookmarks = rv, nil, "", true
			if inner, err = w.r.watch(ctx, o); !gone(err) {
				break
			}
		}
		if err != nil {
			if ctx.Err() == nil {
				w.send(ctx, errorEvent(err))
			}
			return
		}
	}
}

// forward passes inner's events on until it ends, with an error event's
// error, and records what the reflector was given. n counts the events.
func (w *resumingWatch) forward(ctx context.Context, inner watch.Interface, initial *bool, rv *string) (n int, err error) {
	// During a stream of initial events, what the reflector knows is
	// what that stream delivered once it ends with its bookmark.
	var streamed map[string]knownObject
	if *initial {
		streamed = map[string]knownObject{}
	}
	for {
		var ev watch.Event
		var ok bool
		select {
		case <-ctx.Done():
			return n, nil
		case ev, ok = <-inner.ResultChan():
		}
		if !ok {
			return n, nil
		}
		if ev.Type == watch.Error {
			return n, apierrors.FromObject(ev.Object)
		}
		if !w.send(ctx, ev) {
			return n, nil
		}
		n++
		m, err := meta.Accessor(ev.Object)
		if err != nil {
			continue // the reflector logs it
		}
		*rv = m.GetResourceVersion()
		if ev.Type == watch.Bookmark {
			if *initial && m.GetAnnotations()[metav1.InitialEventsAnnotationKey] == "true" {
				*initial = false
				w.r.mu.Lock()
				w.r.known = streamed
				w.r.mu.Unlock()
				w.r.firstList(len(streamed))
			}
			continue
		}
		key, _, ok := keyOf(ev.Object)
		if !ok {
			continue
		}
		if *initial {
			streamed[key] = knownOf(m)
			continue
		}
		w.r.mu.Lock()
		if ev.Type == watch.Deleted {
			delete(w.r.known, key)
		} else {
			w.r.known[key] = knownOf(m)
		}
		w.r.mu.Unlock()
	}
}

// relist lists and delivers the differences to what the reflector knows
// as events, then a bookmark at the list's resourceVersion (returned).
// Unchanged objects are not delivered again.
func (w *resumingWatch) relist(ctx context.Context) (string, error) {
	// The latest state (a quorum read): what a relist needs.
	l, err := w.r.list(ctx, metav1.ListOptions{})
	if err != nil {
		return "", err
	}
	lm, err := meta.ListAccessor(l)
	if err != nil {
		return "", fmt.Errorf("reading list: %w", err)
	}
	items, err := meta.ExtractListWithAlloc(l)
	if err != nil {
		return "", fmt.Errorf("reading list: %w", err)
	}
	now := make(map[string]knownObject, len(items))
	var events []watch.Event
	w.r.mu.Lock()
	known := w.r.known
	for _, obj := range items {
		key, m, ok := keyOf(obj)
		if !ok {
			continue
		}
		now[key] = knownOf(m)
		if old, ok := known[key]; !ok {
			events = append(events, watch.Event{Type: watch.Added, Object: obj})
		} else if old.rv != m.GetResourceVersion() {
			events = append(events, watch.Event{Type: watch.Modified, Object: obj})
		}
	}
	for key, old := range known {
		if _, ok := now[key]; !ok {
			events = append(events, watch.Event{Type: watch.Deleted, Object: w.tombstone(key, old, lm.GetResourceVersion())})
		}
	}
	w.r.mu.Unlock()
	events = append(events, watch.Event{Type: watch.Bookmark, Object: w.tombstone("", knownObject{}, lm.GetResourceVersion())})
	for _, ev := range events {
		if !w.send(ctx, ev) {
			return "", ctx.Err()
		}
	}
	// Worded as the reflector's own line after a list (logs are read for it).
	klog.InfoS("Caches populated by a relist: the watch's resourceVersion expired", "type", w.r.objType, "objects", len(items), "changes", len(events)-1)
	w.r.mu.Lock()
	w.r.known = now
	w.r.mu.Unlock()
	return lm.GetResourceVersion(), nil
}

// tombstone is an object of the informer's type with only the identity
// and labels of a deleted one (or nothing, for a bookmark).
func (w *resumingWatch) tombstone(key string, k knownObject, rv string) runtime.Object {
	obj := reflect.New(w.r.objType.Elem()).Interface().(runtime.Object)
	m, _ := meta.Accessor(obj) // API types have ObjectMeta
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	m.SetNamespace(ns)
	m.SetName(name)
	if k.service != "" {
		m.SetLabels(map[string]string{discovery.LabelServiceName: k.service})
	}
	m.SetResourceVersion(rv)
	return obj
}

func (w *resumingWatch) send(ctx context.Context, ev watch.Event) bool {
	select {
	case <-ctx.Done():
		return false
	case w.result <- ev:
		return true
	}
}

// gone reports that a watch's resourceVersion is no longer served (410
// after an apiserver restart, or newer than a lagging cache): only a
// list gets back in step.
func gone(err error) bool {
	return err != nil && (apierrors.IsResourceExpired(err) || apierrors.IsGone(err) ||
		apierrors.HasStatusCause(err, metav1.CauseTypeResourceVersionTooLarge))
}

// errorEvent passes err on to the reflector.
func errorEvent(err error) watch.Event {
	if st, ok := err.(apierrors.APIStatus); ok {
		s := st.Status()
		return watch.Event{Type: watch.Error, Object: &s}
	}
	return watch.Event{Type: watch.Error, Object: &apierrors.NewInternalError(err).ErrStatus}
}

func keyOf(obj runtime.Object) (string, metav1.Object, bool) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return "", nil, false
	}
	key, err := cache.MetaNamespaceKeyFunc(obj)
	return key, m, err == nil
}
