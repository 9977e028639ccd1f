package nft

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/mdlayher/netlink"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// ForeignChange is one nftables transaction, committed by a netlink socket
// other than the reconciler's, that changed our tables (README.md, "When
// someone else changes our tables").
type ForeignChange struct {
	// Gen is the ruleset generation the transaction committed.
	Gen uint32
	// PortID is the netlink port ID of the writer's socket (0: the kernel).
	PortID uint32
	// PID and Command name the writing task as the kernel reports it
	// (NFTA_GEN_PROC_PID, NFTA_GEN_PROC_NAME), e.g. 4711 "nft".
	PID     uint32
	Command string
	// Objects counts the changed objects of our tables (tables, chains,
	// rules, sets, elements).
	Objects int
	// Lost: events were lost (the socket overran, or it was reopened);
	// our tables may have been changed by anyone.
	Lost bool
}

// Writer describes who made the change, for logs.
func (c ForeignChange) Writer() string {
	switch {
	case c.Lost:
		return "unknown (events lost)"
	case c.PortID == 0:
		return "the kernel"
	case c.Command != "":
		return fmt.Sprintf("%s[%d]", c.Command, c.PID)
	}
	return fmt.Sprintf("netlink port %d", c.PortID)
}

// ownPorts remembers the netlink port IDs of the reconciler's sockets, so
// that the watcher can tell our transactions from anyone else's. The last
// few are kept: events of a batch may still be queued for the watcher when
// the reconciler has replaced the socket that sent it. Watchers are told
// of every new ID (see ownFilter).
type ownPorts struct {
	mu       sync.Mutex
	ids      []uint32
	watchers map[*watcher]bool
}

const ownPortsKept = 8

func (o *ownPorts) add(id uint32) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ids = append(o.ids, id)
	if len(o.ids) > ownPortsKept {
		o.ids = o.ids[len(o.ids)-ownPortsKept:]
	}
	for w := range o.watchers {
		w.filterOwn(o.ids)
	}
}

func (o *ownPorts) has(id uint32) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Contains(o.ids, id)
}

// register makes w filter out our port IDs, now and when they change.
func (o *ownPorts) register(w *watcher) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.watchers == nil {
		o.watchers = map[*watcher]bool{}
	}
	o.watchers[w] = true
	w.filterOwn(o.ids)
}

func (o *ownPorts) unregister(w *watcher) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.watchers, w)
}

// ownFilter is a socket filter that drops the notifications sent for our
// own port IDs in the kernel, before they are queued: the watcher is not
// woken for them and our own large transactions (240k notifications for
// a cold sync of 10k Services x 10 endpoints) cannot overrun its socket.
// A notification skb holds messages of one transaction, all with the
// writer's port ID, so looking at the first header is enough.
func ownFilter(ids []uint32) ([]bpf.RawInstruction, error) {
	prog := []bpf.Instruction{bpf.LoadAbsolute{Off: 12, Size: 4}} // nlmsghdr.nlmsg_pid
	for i, id := range ids {
		// LoadAbsolute reads big-endian; the header is in host order.
		var b [4]byte
		binary.NativeEndian.PutUint32(b[:], id)
		prog = append(prog, bpf.JumpIf{Cond: bpf.JumpEqual, Val: binary.BigEndian.Uint32(b[:]), SkipTrue: uint8(len(ids) - i)})
	}
	prog = append(prog, bpf.RetConstant{Val: 0xffffffff}, bpf.RetConstant{Val: 0})
	return bpf.Assemble(prog)
}

// filterOwn installs ownFilter(ids) on w's socket; on failure the
// watcher still tells our notifications apart, only at a higher cost.
func (w *watcher) filterOwn(ids []uint32) {
	prog, err := ownFilter(ids)
	if err == nil {
		err = w.nl.SetBPF(prog)
	}
	if err != nil && !errors.Is(err, os.ErrClosed) { // closed: the watcher is stopping
		w.log.Error(err, "Cannot filter our own nftables notifications in the kernel; reading them all")
	}
}

// recordPort is a socket option of the reconciler's connections: it notes
// the port ID the kernel bound the socket to.
func (o *ownPorts) recordPort(c *netlink.Conn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		sa, err := unix.Getsockname(int(fd))
		if err != nil {
			serr = fmt.Errorf("getsockname: %w", err)
			return
		}
		nl, ok := sa.(*unix.SockaddrNetlink)
		if !ok {
			serr = fmt.Errorf("getsockname: not a netlink address: %T", sa)
			return
		}
		o.add(nl.Pid)
	})
	if err != nil {
		return err
	}
	return serr
}

// watchRetry bounds the delay before the watcher resubscribes after a
// socket error.
const (
	watchRetryMin = 100 * time.Millisecond
	watchRetryMax = 10 * time.Second
)

// WatchForeign subscribes to the nftables events of the reconciler's
// network namespace and calls notify (from another goroutine) for every
// transaction of another socket that changed our tables. It returns once
// subscribed, so that no change made after it returns is missed; watching
// goes on until ctx ends. If the socket fails later it is reopened (with
// backoff) and notify is called with Lost set, since changes may have gone
// unseen meanwhile.
//
// Transactions of the reconciler's own connection are recognised by their
// netlink port ID, which the kernel puts in the header of every
// notification of a batch and of the NEWGEN message that ends it.
func (r *Reconciler) WatchForeign(ctx context.Context, notify func(ForeignChange)) error {
	w, err := r.subscribe(notify)
	if err != nil {
		return err
	}
	go func() {
		retry := watchRetryMin
		for {
			err := w.run(ctx, notify)
			if ctx.Err() != nil {
				return
			}
			r.opts.Logger.Error(err, "Watching nftables events failed; resubscribing", "after", retry)
			for w = nil; w == nil; {
				select {
				case <-ctx.Done():
					return
				case <-time.After(retry):
				}
				retry = min(2*retry, watchRetryMax)
				if w, err = r.subscribe(notify); err != nil {
					r.opts.Logger.Error(err, "Resubscribing to nftables events", "retryAfter", retry)
				}
			}
			notify(ForeignChange{Lost: true})
		}
	}()
	return nil
}

// watcher reads nftables notifications from one socket.
type watcher struct {
	nl  *netlink.Conn
	own *ownPorts
	log logr.Logger
	// packetPath reports the sets whose elements the packet path changes.
	packetPath func(set string) bool
	// pending accumulates the foreign changes to our tables of the
	// transaction being received, until its NEWGEN message.
	pending ForeignChange
	// notify is WatchForeign's; unmute also calls it (with Lost).
	notify func(ForeignChange)
}

func (r *Reconciler) subscribe(notify func(ForeignChange)) (*watcher, error) {
	// Large buffers: a foreign transaction can be as large as our cold
	// sync (240k notifications at 10k Services x 10 endpoints), queued
	// at once at commit; an overrun costs a repair (see run).
	nl, err := r.dialNetfilter()
	if err != nil {
		return nil, err
	}
	if err := nl.JoinGroup(unix.NFNLGRP_NFTABLES); err != nil {
		nl.Close()
		return nil, fmt.Errorf("join the nftables notification group: %w", err)
	}
	w := &watcher{nl: nl, own: &r.own, log: r.opts.Logger, packetPath: r.layout.PacketPathSet, notify: notify}
	r.own.register(w)
	return w, nil
}

// run reads until ctx ends (nil) or the socket fails (the error).
func (w *watcher) run(ctx context.Context, notify func(ForeignChange)) error {
	stop := context.AfterFunc(ctx, func() { _ = w.nl.Close() })
	defer w.own.unregister(w)
	defer func() {
		if stop() { // ctx did not close it
			_ = w.nl.Close()
		}
	}()
	for {
		msgs, err := w.nl.Receive()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, unix.ENOBUFS) {
				// The kernel dropped notifications: a change of
				// ours or anyone's. The socket stays usable.
				w.log.Info("nftables events overran the watch socket; checking our tables")
				w.pending = ForeignChange{}
				notify(ForeignChange{Lost: true})
				continue
			}
			return fmt.Errorf("receive nftables events: %w", err)
		}
		for _, m := range msgs {
			if c, done := w.message(m); done {
				notify(c)
			}
		}
	}
}

// Offsets in an nftables notification: the nfgenmsg header (family,
// version, resource ID), then attributes. Attribute 1 is the table name in
// every object message (NFTA_TABLE_NAME, NFTA_CHAIN_TABLE, NFTA_RULE_TABLE,
// NFTA_SET_TABLE, NFTA_SET_ELEM_LIST_TABLE, NFTA_OBJ_TABLE,
// NFTA_FLOWTABLE_TABLE).
const (
	nfgenmsgLen  = 4
	attrTable    = 1
	attrElemsSet = unix.NFTA_SET_ELEM_LIST_SET
)

// message handles one notification; it returns a foreign change when m
// ends (NEWGEN) a foreign transaction that touched our tables.
func (w *watcher) message(m netlink.Message) (ForeignChange, bool) {
	if m.Header.Type>>8 != unix.NFNL_SUBSYS_NFTABLES || len(m.Data) < nfgenmsgLen {
		return ForeignChange{}, false
	}
	typ := int(m.Header.Type & 0xff)
	if typ == unix.NFT_MSG_NEWGEN {
		c := w.pending
		w.pending = ForeignChange{}
		if c.Objects == 0 {
			return ForeignChange{}, false
		}
		c.Gen, c.PID, c.Command = decodeGen(m.Data[nfgenmsgLen:])
		return c, true
	}
	if !w.touchesOurTables(m, typ) || w.own.has(m.Header.PID) {
		return ForeignChange{}, false
	}
	w.pending.PortID = m.Header.PID
	w.pending.Objects++
	return ForeignChange{}, false
}

// touchesOurTables reports whether an object notification is about one of
// our tables: family ip or ip6 and table name TableName. Elements of
// affinity sets are left out: the packet path owns them and nftproxy never
// repairs them (a flushed affinity set only forgets clients).
func (w *watcher) touchesOurTables(m netlink.Message, typ int) bool {
	if fam := m.Data[0]; fam != unix.NFPROTO_IPV4 && fam != unix.NFPROTO_IPV6 {
		return false
	}
	ad, err := netlink.NewAttributeDecoder(m.Data[nfgenmsgLen:])
	if err != nil {
		return false
	}
	ours, set := false, ""
	for ad.Next() {
		switch ad.Type() {
		case attrTable:
			ours = ad.String() == TableName
		case attrElemsSet:
			if typ == unix.NFT_MSG_NEWSETELEM || typ == unix.NFT_MSG_DELSETELEM {
				set = ad.String()
			}
		}
	}
	return ours && (set == "" || !w.packetPath(set))
}

// decodeGen reads the NEWGEN attributes.
func decodeGen(b []byte) (gen, pid uint32, comm string) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return 0, 0, ""
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_GEN_ID:
			gen = ad.Uint32()
		case unix.NFTA_GEN_PROC_PID:
			pid = ad.Uint32()
		case unix.NFTA_GEN_PROC_NAME:
			comm = ad.String()
		}
	}
	return gen, pid, comm
}
