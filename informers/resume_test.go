package informers

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
)

// fakeServices is an apiserver's Service list and watch endpoints as an
// informer calls them: the test sets what a list returns and drives
// each watch the informer opens.
type fakeServices struct {
	mu        sync.Mutex
	items     []v1.Service
	rv        string
	lists     int
	listed    metav1.ListOptions // of the last list
	listedAll []metav1.ListOptions
	mores     int // lists through more
	expireAt  int // a continuation of this list call fails with 410 (0: none)
	watches   chan watchCall
}

type watchCall struct {
	opts metav1.ListOptions
	w    *watch.FakeWatcher
}

func newFakeServices(rv string, items ...*v1.Service) *fakeServices {
	f := &fakeServices{watches: make(chan watchCall, 10)}
	f.set(rv, items...)
	return f
}

func (f *fakeServices) set(rv string, items ...*v1.Service) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rv, f.items = rv, nil
	for _, s := range items {
		f.items = append(f.items, *s)
	}
}

// list serves pages of o.Limit items as the apiserver does (the
// continue token here is the next item's index).
func (f *fakeServices) list(_ context.Context, o metav1.ListOptions) (*v1.ServiceList, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	f.listed = o
	f.listedAll = append(f.listedAll, o)
	if o.Continue != "" && len(f.listedAll) == f.expireAt {
		return nil, apierrors.NewResourceExpired("the continue token is too old")
	}
	from, to := 0, len(f.items)
	if o.Continue != "" {
		from, _ = strconv.Atoi(o.Continue)
	}
	l := &v1.ServiceList{ListMeta: metav1.ListMeta{ResourceVersion: f.rv}}
	if o.Limit > 0 && from+int(o.Limit) < to {
		to = from + int(o.Limit)
		l.Continue = strconv.Itoa(to)
	}
	l.Items = slices.Clone(f.items[from:to])
	return l, nil
}

// more is list for a list's continuation pages (informers.Config.Pages).
func (f *fakeServices) more(ctx context.Context, o metav1.ListOptions) (*v1.ServiceList, error) {
	f.mu.Lock()
	f.mores++
	f.mu.Unlock()
	return f.list(ctx, o)
}

func (f *fakeServices) listCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lists
}

func (f *fakeServices) watch(_ context.Context, o metav1.ListOptions) (watch.Interface, error) {
	w := watch.NewFake()
	f.watches <- watchCall{o, w}
	return w, nil
}

// nextWatch is the informer's next watch call. The wait is long only to
// tolerate a loaded machine: the assertions are on what was called.
func (f *fakeServices) nextWatch(t *testing.T) watchCall {
	t.Helper()
	select {
	case c := <-f.watches:
		return c
	case <-time.After(30 * time.Second):
		t.Fatal("the informer opened no watch")
		return watchCall{}
	}
}

func rvService(name, rv string) *v1.Service {
	s := svcObj(name, nil)
	s.ResourceVersion = rv
	return s
}

// runServiceInformer runs a Service informer over api (client decides
// whether the reflector streams its initial state through a watch
// instead of listing) and returns its store
// and the names its handler saw deleted.
func runServiceInformer(t *testing.T, client any, api *fakeServices) (cache.Store, func() []string) {
	t.Helper()
	inf := newInformer(client, &v1.Service{}, func(*metav1.ListOptions) {}, api.list, api.more, api.watch, nil)
	var mu sync.Mutex
	var deleted []string
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: func(obj any) {
		mu.Lock()
		defer mu.Unlock()
		deleted = append(deleted, unwrap(obj).(*packedService).name)
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { inf.RunWithContext(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return inf.GetStore(), func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Sorted(slices.Values(deleted))
	}
}

// waitForStore waits until the store holds exactly want (name@rv).
func waitForStore(t *testing.T, s cache.Store, want ...string) {
	t.Helper()
	slices.Sort(want)
	var got []string
	err := wait.PollUntilContextTimeout(context.Background(), 5*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		got = nil
		for _, o := range s.List() {
			got = append(got, o.(*packedService).name+"@"+o.(*packedService).version)
		}
		slices.Sort(got)
		return slices.Equal(got, want), nil
	})
	if err != nil {
		t.Fatalf("cache holds %v, want %v", got, want)
	}
}

// waitForDeleted waits until the handler has seen exactly want deleted
// (handlers run after the cache is updated).
func waitForDeleted(t *testing.T, deleted func() []string, want ...string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 5*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return slices.Equal(deleted(), want), nil
	})
	if err != nil {
		t.Fatalf("handler saw %v deleted, want %v", deleted(), want)
	}
}

// connectionLost is what client-go's watch stream reports when the
// apiserver's connection breaks mid-stream (an error that is not a
// plain EOF; those end the stream silently).
func connectionLost() runtime.Object {
	return apierrors.NewClientErrorReporter(http.StatusInternalServerError, "GET", "ClientWatchDecoding").
		AsObject(fmt.Errorf("unable to decode an event from the watch stream: read tcp: connection reset by peer"))
}

func expired() runtime.Object {
	return &apierrors.NewResourceExpired("too old resource version: 13 (20)").ErrStatus
}

// The reflector sleeps its backoff (0.8 s doubling to 30 s, reset only
// after two quiet minutes) before it lists and watches again whenever a
// watch ends with an error or expires. So the informer keeps its watch
// open across a lost connection, resuming from the last resourceVersion
// it delivered, and relists by itself when that version is gone: the
// reflector never returns from its list-and-watch, so it never backs
// off. Without that the reflector relists after each loss below (and
// only after its backoff).
func TestInformerResumesItsWatchWithoutTheReflectorsBackoff(t *testing.T) {
	recordPauses(t)
	api := newFakeServices("10", rvService("a", "10"), rvService("b", "9"))
	store, deleted := runServiceInformer(t, fake.NewClientset(), api)

	call := api.nextWatch(t)
	if call.opts.ResourceVersion != "10" {
		t.Fatalf("first watch from %q, want the list's 10", call.opts.ResourceVersion)
	}
	// Three connection losses in a row, one ending the stream silently.
	for i, name := range []string{"c", "d", "e"} {
		rv := fmt.Sprint(11 + i)
		call.w.Add(rvService(name, rv))
		if i != 1 {
			call.w.Error(connectionLost())
		}
		call.w.Stop()
		call = api.nextWatch(t)
		if call.opts.ResourceVersion != rv || call.opts.SendInitialEvents != nil || !call.opts.AllowWatchBookmarks {
			t.Fatalf("after loss %d the watch resumed with %+v, want from resourceVersion %s with bookmarks", i+1, call.opts, rv)
		}
	}
	if n := api.listCalls(); n != 1 {
		t.Fatalf("%d lists: the reflector relisted after a lost connection (after its backoff)", n)
	}
	waitForStore(t, store, "a@10", "b@9", "c@11", "d@12", "e@13")

	// The apiserver restarted and lost resourceVersion 13: the informer
	// lists (b and d deleted, a changed, f new meanwhile), hands the
	// differences to the cache as events and watches from the list.
	api.set("20", rvService("a", "18"), rvService("c", "11"), rvService("e", "13"), rvService("f", "19"))
	call.w.Error(expired())
	call.w.Stop()
	call = api.nextWatch(t)
	if call.opts.ResourceVersion != "20" {
		t.Fatalf("after the relist the watch resumed from %q, want the list's 20", call.opts.ResourceVersion)
	}
	waitForStore(t, store, "a@18", "c@11", "e@13", "f@19")
	waitForDeleted(t, deleted, "b", "d")
	if n := api.listCalls(); n != 2 {
		t.Errorf("%d lists, want 2 (the first and the one after the expiry)", n)
	}
	call.w.Add(rvService("g", "21"))
	waitForStore(t, store, "a@18", "c@11", "e@13", "f@19", "g@21")
}

// Where the reflector streams its initial state through a watch, the
// watch resumes only after the state's end (its bookmark); the objects
// streamed are what a later relist is compared with.
func TestInformerResumesAWatchThatStreamedTheInitialState(t *testing.T) {
	recordPauses(t)
	api := newFakeServices("10")
	store, deleted := runServiceInformer(t, nil, api) // a client that can stream

	call := api.nextWatch(t)
	if call.opts.SendInitialEvents == nil || !*call.opts.SendInitialEvents {
		t.Fatalf("first watch %+v, want one streaming the initial state", call.opts)
	}
	call.w.Add(rvService("a", "9"))
	call.w.Add(rvService("b", "10"))
	end := rvService("", "10")
	end.Annotations = map[string]string{metav1.InitialEventsAnnotationKey: "true"}
	call.w.Action(watch.Bookmark, end)
	call.w.Add(rvService("c", "11"))
	call.w.Error(connectionLost())
	call.w.Stop()

	call = api.nextWatch(t)
	if call.opts.ResourceVersion != "11" || call.opts.SendInitialEvents != nil || call.opts.ResourceVersionMatch != "" {
		t.Fatalf("after the loss the watch resumed with %+v, want from resourceVersion 11 without initial events", call.opts)
	}
	waitForStore(t, store, "a@9", "b@10", "c@11")

	api.set("20", rvService("a", "9"), rvService("c", "11"))
	call.w.Error(expired())
	call.w.Stop()
	call = api.nextWatch(t)
	if call.opts.ResourceVersion != "20" {
		t.Fatalf("after the relist the watch resumed from %q, want the list's 20", call.opts.ResourceVersion)
	}
	waitForStore(t, store, "a@9", "c@11")
	waitForDeleted(t, deleted, "b")
	if n := api.listCalls(); n != 1 {
		t.Errorf("%d lists, want 1 (the relist after the expiry)", n)
	}
}

// A deletion found by a relist reaches the handlers with the labels the
// cache keeps: the slice handler needs the deleted slice's Service.
func TestRelistDeletesSlicesWithTheirService(t *testing.T) {
	var list func(context.Context, metav1.ListOptions) (runtime.Object, error)
	r := newResumer(&discovery.EndpointSlice{}, func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
		return list(ctx, o)
	}, nil)
	kept := sliceObj("kept", "web")
	kept.ResourceVersion = "5"
	gone := sliceObj("gone", "db")
	list = func(context.Context, metav1.ListOptions) (runtime.Object, error) {
		return &discovery.EndpointSliceList{ListMeta: metav1.ListMeta{ResourceVersion: "5"}, Items: []discovery.EndpointSlice{*kept, *gone}}, nil
	}
	if _, err := r.List(context.Background(), metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	list = func(context.Context, metav1.ListOptions) (runtime.Object, error) {
		return &discovery.EndpointSliceList{ListMeta: metav1.ListMeta{ResourceVersion: "9"}, Items: []discovery.EndpointSlice{*kept}}, nil
	}
	w := &resumingWatch{r: r, result: make(chan watch.Event, 10)}
	rv, err := w.relist(context.Background())
	if err != nil || rv != "9" {
		t.Fatalf("relist: %q, %v; want resourceVersion 9", rv, err)
	}
	close(w.result)
	var got []string
	for ev := range w.result {
		s := ev.Object.(*discovery.EndpointSlice)
		got = append(got, fmt.Sprintf("%s %s/%s of %s@%s", ev.Type, s.Namespace, s.Name, s.Labels[discovery.LabelServiceName], s.ResourceVersion))
	}
	want := []string{"DELETED ns/gone of db@9", "BOOKMARK / of @9"}
	if !slices.Equal(got, want) {
		t.Errorf("relist delivered %q, want %q (kept is unchanged)", got, want)
	}
}

// The informers New make list their initial state rather than stream it
// (see New: a LIST is several times faster), in pages of listPage read
// one after the other from the same snapshot, hand the reflector the
// whole list at once, and watch from the list's resourceVersion.
func TestInformerListsItsInitialStateInPagesAsAWhole(t *testing.T) {
	var items []*v1.Service
	var want []string
	for i := range 2*listPage + 1 {
		items = append(items, rvService(fmt.Sprintf("s%04d", i), "9"))
		want = append(want, fmt.Sprintf("s%04d@9", i))
	}
	api := newFakeServices("10", items...)
	store, _ := runServiceInformer(t, listInitialState{}, api)
	call := api.nextWatch(t)
	if call.opts.SendInitialEvents != nil || call.opts.ResourceVersion != "10" {
		t.Fatalf("first watch %+v, want one from the list's resourceVersion 10 without initial events", call.opts)
	}
	api.mu.Lock()
	listed, mores := slices.Clone(api.listedAll), api.mores
	api.mu.Unlock()
	if len(listed) != 3 {
		t.Fatalf("%d list calls %+v, want 3 pages", len(listed), listed)
	}
	if mores != 2 {
		t.Errorf("%d of the 3 pages read through the pages' client, want the 2 continuations", mores)
	}
	for i, o := range listed {
		if o.Limit != listPage {
			t.Errorf("page %d asked for %d items, want %d", i, o.Limit, listPage)
		}
		if i == 0 && o.ResourceVersion == "0" {
			t.Errorf("the first page asked for resourceVersion 0, whose limit the apiserver ignores")
		}
		if i > 0 && (o.Continue != strconv.Itoa(i*listPage) || o.ResourceVersion != "" || o.ResourceVersionMatch != "") {
			t.Errorf("page %d: %+v, want the previous page's continue token and no resourceVersion", i, o)
		}
	}
	waitForStore(t, store, want...)
}

// A list whose continuation expired mid-way (the apiserver's snapshot
// is gone) is read again whole, and the reflector gets every object
// once.
func TestListWhoseContinuationExpiredIsReadWhole(t *testing.T) {
	var items []*v1.Service
	for i := range 2*listPage + 1 {
		items = append(items, rvService(fmt.Sprintf("s%04d", i), "9"))
	}
	api := newFakeServices("10", items...)
	api.expireAt = 3 // the second continuation
	r := newResumer(&v1.Service{}, func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
		return api.list(ctx, o)
	}, api.watch)
	l, err := r.List(context.Background(), metav1.ListOptions{ResourceVersion: "0"})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(l.(*v1.ServiceList).Items); n != len(items) || len(r.known) != len(items) {
		t.Errorf("listed %d, known %d, want %d each", n, len(r.known), len(items))
	}
	last := api.listedAll[len(api.listedAll)-1]
	if len(api.listedAll) != 4 || last.Limit != 0 || last.Continue != "" {
		t.Errorf("list calls %+v, want 2 pages, the expired continuation, then one whole list", api.listedAll)
	}
}

// The list the resumer hands the reflector is already trimmed (the
// untrimmed objects are garbage before the reflector copies them), and
// what it knows of the list is the basis of a later relist.
func TestResumerListHandsOverTrimmedItems(t *testing.T) {
	svc, _, _ := untrimmed()
	api := newFakeServices("10", svc)
	r := newResumer(&v1.Service{}, func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
		return api.list(ctx, o)
	}, api.watch)
	l, err := r.List(context.Background(), metav1.ListOptions{Limit: 500})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := trim(svc)
	if got := &l.(*v1.ServiceList).Items[0]; !reflect.DeepEqual(got, want) {
		t.Errorf("listed\n%+v\nwant trimmed\n%+v", got, want)
	}
	if k, ok := r.known["ns/web"]; !ok || k.rv != "7" || len(r.known) != 1 {
		t.Errorf("known %+v, want ns/web at 7", r.known)
	}
}
