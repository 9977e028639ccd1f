package conntrack

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// Cleaner deletes stale UDP entries from one network namespace's conntrack
// table, on its own goroutine, and after a repair the entries that were
// never DNATed (Repaired).
//
// The sync path only hands over the Index of the State it programmed
// (Programmed: a diff against the previous one; NewIndex and Programmed
// take about 2 ms for 200 UDP service ports on the test machine). The
// goroutine then walks the table once per family that has work, with the
// narrowest kernel filter the work allows (Query), judges every entry the
// kernel returns (Index.Stale) and deletes the stale ones by tuple and
// entry ID. Walking is the cost that does not shrink: the kernel visits
// every entry of the table for each dump, filter or not (about 0.4 s of
// kernel time per million entries on a 2-core test machine), and the
// filter only spares copying the entries that do not match to us. Work
// handed over while a walk runs is merged and done by the next walk, which
// judges entries against the newest State.
type Cleaner struct {
	nsFd     int
	onResult func(Result)

	dumpConn, delConn *conn
	// unfiltered is set once the kernel refused a dump filter: walks
	// then send none (the entries are judged here either way).
	unfiltered bool

	mu      sync.Mutex
	cond    *sync.Cond
	last    *Index // newest State handed over
	pending work
	handed  uint64 // Programmed calls so far
	done    uint64 // hand-overs whose work has been attempted
	closed  bool

	wake chan struct{}
	exit chan struct{}
}

// Result describes one cleanup run.
type Result struct {
	// Walks counts table dumps (one per family with work).
	Walks int
	// Seen counts the entries the kernel returned (those its filter let
	// through); Deleted those deleted.
	Seen, Deleted int
	Duration      time.Duration
	// LongestRecv is the longest single read of a dump: one kernel call
	// that walks table buckets with bottom halves disabled until it has a
	// buffer to return (with a narrow filter, possibly the whole table).
	LongestRecv time.Duration
	// Err is set when a dump or a deletion failed; the run's work is
	// retried at the next hand-over.
	Err error
}

// Options configures a Cleaner.
type Options struct {
	// OnResult, if set, is called after every run, on the Cleaner's
	// goroutine (metrics).
	OnResult func(Result)
}

// NewCleaner opens netlink sockets in the namespace of nsFd (0: the
// current namespace) and starts the cleanup goroutine.
func NewCleaner(nsFd int, o Options) (*Cleaner, error) {
	d, err := dial(nsFd)
	if err != nil {
		return nil, err
	}
	c := &Cleaner{nsFd: nsFd, onResult: o.OnResult, dumpConn: d, pending: newWork(),
		wake: make(chan struct{}, 1), exit: make(chan struct{})}
	c.cond = sync.NewCond(&c.mu)
	go c.loop()
	return c, nil
}

// Programmed hands over the Index of a State whose rules are now in the
// kernel. It does not wait for the cleanup.
func (c *Cleaner) Programmed(cur *Index) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.pending.merge(plan(cur, c.last))
	c.last = cur
	c.handed++
	select {
	case c.wake <- struct{}{}:
	default: // a run is already due; it will take this work too
	}
}

// Wait blocks until the work of every State handed over so far has been
// attempted (tests, benchmarks).
func (c *Cleaner) Wait() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for target := c.handed; c.done < target && !c.closed; {
		c.cond.Wait()
	}
}

// Close stops the goroutine, after the run in progress if any, and closes
// the sockets.
func (c *Cleaner) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.cond.Broadcast()
	close(c.wake)
	c.mu.Unlock()
	<-c.exit
	c.dumpConn.close()
	if c.delConn != nil {
		c.delConn.close()
	}
}

func (c *Cleaner) loop() {
	defer close(c.exit)
	for range c.wake {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return
		}
		w, cur, upTo := c.pending, c.last, c.handed
		c.pending = newWork()
		c.mu.Unlock()

		var res Result
		if !w.empty() {
			res = c.run(w, cur)
			if res.Err != nil {
				// The rules are right; stale flows age out on their
				// own meanwhile. Retry with the next hand-over.
				c.mu.Lock()
				c.pending.merge(w)
				c.mu.Unlock()
			}
			c.report(res)
		}
		c.mu.Lock()
		c.done = upTo
		c.cond.Broadcast()
		c.mu.Unlock()
	}
}

func (c *Cleaner) report(res Result) {
	if res.Err != nil {
		klog.ErrorS(res.Err, "Deleting stale conntrack entries", "deleted", res.Deleted)
	} else {
		klog.V(2).InfoS("Deleted stale conntrack entries", "entries", res.Deleted,
			"walks", res.Walks, "seen", res.Seen, "duration", res.Duration, "longestKernelRead", res.LongestRecv)
	}
	if c.onResult != nil {
		c.onResult(res)
	}
}

// walk dumps the entries q selects to fn and returns how many dumps it
// took. A kernel that refuses the filter (EINVAL, EOPNOTSUPP: older or
// differently configured kernels) gets the same walk without one, now and
// from then on.
func (c *Cleaner) walk(q Query, fn func(*Flow)) (int, error) {
	if c.unfiltered {
		q = Query{Family: q.Family}
	}
	err := c.dumpConn.dump(q, fn)
	if err == nil || c.unfiltered || !(errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP)) {
		return 1, err
	}
	klog.InfoS("The kernel refused a conntrack dump filter; walking the table unfiltered from now on", "err", err)
	c.unfiltered = true
	return 2, c.dumpConn.dump(Query{Family: q.Family}, fn)
}

// deleteBatch is how many stale entries are kept before they are deleted,
// from a second socket while the dump goes on: memory stays bounded
// whatever the number of stale entries.
const deleteBatch = 1024

// run does one cleanup: a walk per family with work.
func (c *Cleaner) run(w work, cur *Index) Result {
	start := time.Now()
	var res Result
	var errs []error
	stale := make([]Flow, 0, deleteBatch)
	flush := func() {
		if len(stale) == 0 {
			return
		}
		if c.delConn == nil {
			d, err := dial(c.nsFd)
			if err != nil {
				errs = append(errs, err)
				stale = stale[:0]
				return
			}
			c.delConn = d
		}
		n, err := c.delConn.deleteFlows(stale)
		res.Deleted += n
		if err != nil {
			errs = append(errs, err)
		}
		stale = stale[:0]
	}
	walk := func(family uint8, q Query, isStale func(*Flow) bool) {
		walks, err := c.walk(q, func(fl *Flow) {
			res.Seen++
			if !isStale(fl) {
				return
			}
			stale = append(stale, *fl)
			if len(stale) == deleteBatch {
				flush()
			}
		})
		res.Walks += walks
		flush()
		res.LongestRecv = max(res.LongestRecv, c.dumpConn.longestRecv)
		if err != nil {
			errs = append(errs, fmt.Errorf("walk of family %d: %w", family, err))
		}
	}
	for i, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		if f := w.fams[i]; !f.empty() {
			walk(family, f.query(family), func(fl *Flow) bool {
				return fl.Proto == unix.IPPROTO_UDP && cur.Stale(fl.OrigDst, fl.ReplySrc, w.removed)
			})
		}
		if hasUnnatted(w.unnatted, family) {
			walk(family, unnattedQuery(family), func(fl *Flow) bool { return unnatted(fl, w.unnatted) })
		}
	}
	res.Duration = time.Since(start)
	if err := errors.Join(errs...); err != nil {
		res.Err = fmt.Errorf("conntrack: %w", err)
	}
	return res
}
