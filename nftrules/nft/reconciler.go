package nft

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Layout is what the generic layer must be told about the contents of our
// tables because the kernel does not record it. google/nftables v0.3.0
// cannot read nft's typeof user data and misreports the key type of
// verdict maps (#319), so a set read back is typed from the layout that
// made it; and only the layout knows which sets the packet path fills.
// nftrules implements it for nftproxy's tables.
type Layout interface {
	// Set returns an empty set of the given name and family, with the type
	// the layout gives it; false for a name the layout never makes (such a
	// set is read back typeless, so that Diff recreates the table).
	Set(f Family, name string) (*Set, bool)
	// PacketPathSet reports whether the packet path fills the named set
	// (update @set): its element changes are not foreign changes.
	PacketPathSet(name string) bool
}

// Options configure a Reconciler.
type Options struct {
	// NetNSFd, when non-zero, is an fd of the network namespace to program
	// (tests use their own namespaces); zero means the current namespace.
	NetNSFd int
	// Logger receives the reconciler's and watcher's messages (nftrules
	// passes klog's); the zero Logger discards them.
	Logger logr.Logger
	// WrapBatchIO is a test seam, nil in production: when set, every
	// batch is sent and its answers read through the BatchIO it returns
	// for the netlink socket, so that tests can inject netlink faults
	// (an error after the kernel committed, a refused batch, a short
	// send) into the real reconciler.
	WrapBatchIO func(BatchIO) BatchIO
	// AfterVerifyRead is a test seam, nil in production: Verify calls it
	// after each read it makes without the lock, before it decides whether
	// a commit came between, so that tests can interleave Syncs with
	// every read.
	AfterVerifyRead func()
}

// SyncResult describes one sync.
type SyncResult struct {
	// Full is true when live state was read from the kernel for this sync.
	Full bool
	// Objects counts the kernel objects the transaction touched (0: the
	// kernel already matched).
	Objects int
	// Messages counts the netlink messages of the batch.
	Messages int
	// Timing splits the sync's time between its steps.
	Timing SyncTiming
}

// SyncTiming is where a sync's time went: reading our tables back from the
// kernel (full syncs only), Diff, encoding the batch, and sending it and
// reading the answers (the kernel validates and commits inside sendmsg).
type SyncTiming struct {
	Read, Diff, Encode, Send time.Duration
}

// Reconciler keeps our tables in the kernel equal to a desired Ruleset.
// It is the only code in nftproxy that changes nftables.
type Reconciler struct {
	layout Layout
	opts   Options

	mu sync.Mutex
	// nft is the lasting connection of reads (see conn), sock the lasting
	// socket of batches (see batchConn); nil until first used.
	nft  *nftables.Conn
	sock *netlink.Conn
	// applied is the ruleset of the last committed transaction; between full
	// syncs it stands in for the live state (reading every rule back is
	// slow). nil forces the next sync to read the kernel.
	applied *Ruleset
	// epoch changes whenever the kernel may have changed other than by a
	// partial Sync of the applied ruleset's successor: a full Sync (which
	// repairs whatever it finds) or a failure (applied unknown). Verify
	// trusts a read made without the lock only if the epoch and the
	// objects it read stayed the same.
	epoch uint64
	// commits counts the transactions sent, skeletonCommits those that
	// change more than set elements (tables, sets, chains, rules).
	commits, skeletonCommits uint64

	// own are the port IDs of the sockets that sent our batches
	// (WatchForeign).
	own ownPorts
}

// NewReconciler returns a reconciler of the tables made by layout, in the
// namespace in opts. Its netlink sockets open at first use.
func NewReconciler(layout Layout, opts Options) *Reconciler {
	return &Reconciler{layout: layout, opts: opts}
}

// Socket buffers of the reconciler's sockets. A batch is one datagram (a
// cold sync of 10k Services is tens of MB): with default buffers its
// sendmsg fails ("message too long"), and the answers of a batch or the
// pages of a dump can overflow the receive queue (ENOBUFS).
const batchSocketBuffer = 256 << 20

func forceBuffers(c *netlink.Conn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		for _, opt := range []int{unix.SO_SNDBUFFORCE, unix.SO_RCVBUFFORCE} {
			if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt, batchSocketBuffer); e != nil {
				serr = fmt.Errorf("setsockopt %d: %w", opt, e)
				return
			}
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// The reconciler keeps two netlink sockets for its life: a lasting
// google/nftables connection for reads (conn), and a socket of its own for
// batches (batchConn), which the library's encoder never touches (see
// encoder). Both last: closing a netlink socket that sent a batch makes the
// kernel wait for an RCU grace period, which cost 7-20 ms per sync here,
// far more than a small transaction (about 70 µs).

// conn returns the lasting nftables connection of reads, opening it when
// needed. It never writes: every change goes through batchConn.
func (r *Reconciler) conn() (*nftables.Conn, error) {
	if r.nft != nil {
		return r.nft, nil
	}
	opts := []nftables.ConnOption{nftables.AsLasting(), nftables.WithSockOptions(forceBuffers)}
	if r.opts.NetNSFd != 0 {
		opts = append(opts, nftables.WithNetNSFd(r.opts.NetNSFd))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("open nftables connection: %w", err)
	}
	r.nft = c
	return c, nil
}

// batchConn returns the lasting socket that sends our batches, opening it
// when needed; its port ID is the one the watcher filters as ours.
func (r *Reconciler) batchConn() (*netlink.Conn, error) {
	if r.sock != nil {
		return r.sock, nil
	}
	nl, err := r.dialNetfilter()
	if err != nil {
		return nil, err
	}
	if err := r.own.recordPort(nl); err != nil {
		nl.Close()
		return nil, err
	}
	r.sock = nl
	return nl, nil
}

// dropConn closes both sockets after an error: whatever a failed batch or
// read left behind (unread answers) goes with them.
func (r *Reconciler) dropConn() {
	if r.nft != nil {
		_ = r.nft.CloseLasting()
		r.nft = nil
	}
	if r.sock != nil {
		_ = r.sock.Close()
		r.sock = nil
	}
}

// Sync makes the kernel match desired in one atomic transaction. With full
// set (or when the last applied state is unknown) it first reads our tables
// back from the kernel, repairing any drift; otherwise the last applied
// ruleset stands in for the live state.
func (r *Reconciler) Sync(ctx context.Context, desired *Ruleset, full bool) (SyncResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := SyncResult{Full: full || r.applied == nil}
	live := r.applied
	if res.Full {
		r.epoch++
		began := time.Now()
		var err error
		if live, err = r.readLive(); err != nil {
			return res, fmt.Errorf("read live ruleset: %w", err)
		}
		res.Timing.Read = time.Since(began)
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	began := time.Now()
	tx := Diff(live, desired)
	res.Timing.Diff = time.Since(began)
	res.Objects = tx.Objects()
	if tx.Empty() {
		r.applied = desired.settled()
		return res, nil
	}
	r.commits++ // also when it fails: then the epoch changes too
	if tx.changesSkeleton() {
		r.skeletonCommits++
	}
	msgs, err := r.apply(tx, &res.Timing)
	res.Messages = msgs
	if err != nil {
		r.applied = nil
		r.epoch++
		if errors.Is(err, errNotSent) {
			return res, err
		}
		// The kernel may have committed the batch even though reading the
		// ACKs failed (ENOBUFS): look before deciding. Either way applied
		// stays nil: after an error only the kernel is trusted, so the
		// next sync reads it again (a full sync), whatever the caller
		// asks for.
		if committed, rerr := r.matches(desired); rerr == nil && committed {
			r.opts.Logger.Info("nftables batch reported an error but is committed", "err", err)
			return res, nil
		}
		return res, fmt.Errorf("apply transaction of %d objects: %w", res.Objects, err)
	}
	r.applied = desired.settled()
	return res, nil
}

func (r *Reconciler) matches(desired *Ruleset) (bool, error) {
	live, err := r.readLive()
	if err != nil {
		return false, err
	}
	return Diff(live, desired).Empty(), nil
}

// ReadLive reads our tables back from the kernel.
func (r *Reconciler) ReadLive() (*Ruleset, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.readLive()
}

// Close releases the netlink sockets. Rules stay in the kernel.
func (r *Reconciler) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dropConn()
	return nil
}

// Cleanup deletes our tables (both families) and nothing else. It is
// idempotent: missing tables are not an error.
func (r *Reconciler) Cleanup() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.applied = nil
	r.epoch++
	live, err := r.readLive()
	if err != nil {
		return err
	}
	tx := &Transaction{}
	for _, f := range live.SortedFamilies() {
		tx.Ops = append(tx.Ops, Op{Kind: OpDelTable, Family: f})
	}
	if _, err := r.apply(tx, &SyncTiming{}); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete tables: %w", err)
	}
	return nil
}
