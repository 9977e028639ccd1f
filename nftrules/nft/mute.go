package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// At commit the kernel builds a notification of every object of a
// transaction (one per set element) whenever a socket of the namespace has
// joined the nftables group, and our own watcher (WatchForeign) is such a
// socket. Its socket filter drops ours only after they are built: with the
// watcher subscribed, a cold apply of 10k Services × 10 endpoints took
// 1.26 s of system time against 0.96 s without (perf:
// nf_tables_setelem_notify 8 % of the samples), and at 50k the proxy sat
// inside the batch's sendmsg for seconds after its rules were live
// (docs/performance.md). So the watchers leave the group while a large
// batch of ours is sent and rejoin after it; the ruleset generation, read
// before and after, tells whether anyone else committed meanwhile: then
// the watchers report Lost, as after an overrun, and the proxier repairs.

// muteMinObjects is the size of transaction, in objects, from which the
// watchers are muted: below it the notifications cost less than the
// round trips muting takes (two generation reads and two socket options
// per watcher).
const muteMinObjects = 2000

// muted is the state of one muting: the watchers that left the group and
// the generation read before.
type muted struct {
	watchers []*watcher
	gen      uint32
}

// mute makes every watcher leave the nftables group for a transaction of
// objects objects sent on nl; nil if there is nothing to mute.
func (o *ownPorts) mute(nl *netlink.Conn, objects int) *muted {
	if objects < muteMinObjects {
		return nil
	}
	o.mu.Lock()
	ws := make([]*watcher, 0, len(o.watchers))
	for w := range o.watchers {
		ws = append(ws, w)
	}
	o.mu.Unlock()
	if len(ws) == 0 {
		return nil
	}
	// The generation is read while the watchers still listen: a commit
	// after this read is either seen by them or counted below.
	gen, err := readGen(nl)
	if err != nil {
		return nil // not muted: the notifications cost time, nothing else
	}
	m := &muted{gen: gen}
	for _, w := range ws {
		if err := w.nl.LeaveGroup(unix.NFNLGRP_NFTABLES); err != nil {
			if !errors.Is(err, os.ErrClosed) {
				w.log.Error(err, "Cannot leave the nftables group for a large batch; it stays subscribed")
			}
			continue
		}
		m.watchers = append(m.watchers, w)
	}
	return m
}

// unmute rejoins the group and reports Lost to every muted watcher unless
// the generation moved exactly as our batch did: by one if it was
// committed (sent without error), not at all otherwise. A batch whose
// answers could not be read may have been committed: then any move counts
// as someone else's, at worst a needless repair.
func (m *muted) unmute(nl *netlink.Conn, sendErr error) {
	if m == nil {
		return
	}
	lost := false
	for _, w := range m.watchers {
		if err := w.nl.JoinGroup(unix.NFNLGRP_NFTABLES); err != nil {
			// A closed watcher is stopping; an open one that cannot
			// rejoin fails its next read and resubscribes (Lost).
			if !errors.Is(err, os.ErrClosed) {
				w.log.Error(err, "Cannot rejoin the nftables group after a large batch")
				lost = true
			}
		}
	}
	want := m.gen
	if sendErr == nil {
		if want++; want == 0 { // the kernel skips generation 0
			want = 1
		}
	}
	gen, err := readGen(nl)
	if err != nil || (gen != want && (sendErr == nil || gen != m.gen)) {
		lost = true
	}
	if !lost {
		return
	}
	for _, w := range m.watchers {
		w.log.Info("Another nftables transaction may have been committed while our watchers were muted; checking our tables",
			"generationBefore", m.gen, "generationAfter", gen, "readErr", err)
		w.notify(ForeignChange{Lost: true})
	}
}

// readGen returns the namespace's nftables ruleset generation.
func readGen(nl *netlink.Conn) (uint32, error) {
	msgs, err := nl.Execute(nftRequest(IPv4, unix.NFT_MSG_GETGEN, 0, nil))
	if err != nil {
		return 0, fmt.Errorf("read the nftables generation: %w", err)
	}
	for _, m := range msgs {
		if len(m.Data) < nfgenmsgLen {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[nfgenmsgLen:])
		if err != nil {
			return 0, fmt.Errorf("read the nftables generation: %w", err)
		}
		ad.ByteOrder = binary.BigEndian
		for ad.Next() {
			if ad.Type() == unix.NFTA_GEN_ID {
				return ad.Uint32(), nil
			}
		}
	}
	return 0, errors.New("read the nftables generation: no NFTA_GEN_ID in the answer")
}
