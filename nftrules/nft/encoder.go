package nft

import (
	"errors"
	"fmt"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// encoder encodes the netlink messages of one transaction into its
// batch (batchbuf.go): tables, sets and chains through google/nftables,
// rules (rulemsg.go) and elements (elemmsg.go) ourselves.
//
// google/nftables v0.3.0 keeps what it encodes inside its Conn and hands
// the messages out only to the Conn's socket, at Flush. The encoder's Conn
// is made with nftables.WithTestDial, the library's public seam for its
// socket: there the "socket" is record, which appends the messages Flush
// hands it to the batch and acknowledges every one. Flush thus yields the
// messages queued since the last one (and the serialization error the
// library keeps until Flush, as Flush's error), without reaching into the
// Conn. Every library call we make queues one message, so an op's first
// message is known before the flush; flush checks the count. We flush
// only when we need the messages (ours follow, a NEWSET gets user data,
// the transaction is complete) or when flushEvery calls are pending: each
// Flush costs a dozen allocations, and copies the pending messages twice.
// Nothing reaches the kernel from here: sendBatch sends the batch on the
// Reconciler's own socket.
type encoder struct {
	c *nftables.Conn
	b *batchBuf
	// pending counts the library calls since the last flush.
	pending int
	// scratch holds the message being encoded by us (a rule).
	scratch []byte
}

// flushEvery bounds the messages pending in the library's Conn.
const flushEvery = 256

// newEncoder returns an encoder with an empty batch.
func newEncoder() (*encoder, error) {
	e := &encoder{b: newBatchBuf()}
	c, err := nftables.New(nftables.AsLasting(), nftables.WithTestDial(e.record))
	if err != nil {
		return nil, fmt.Errorf("nftables encoder: %w", err)
	}
	e.c = c
	return e, nil
}

// ack is what the encoder's socket answers to every read: Flush reads one
// answer per message it sent, and an NLMSG_ERROR with errno 0 is an ACK.
var ack = []netlink.Message{{Header: netlink.Header{Type: netlink.Error}, Data: make([]byte, 4)}}

// record is the encoder's Conn's socket (an nltest.Func): req is either a
// batch Flush sends or, nil, a read of the next answer.
func (e *encoder) record(req []netlink.Message) ([]netlink.Message, error) {
	if req == nil {
		return ack, nil
	}
	if len(req) < 2 || req[0].Header.Type != unix.NFNL_MSG_BATCH_BEGIN || req[len(req)-1].Header.Type != unix.NFNL_MSG_BATCH_END {
		return nil, errors.New("google/nftables flushed something other than one batch")
	}
	for _, m := range req[1 : len(req)-1] {
		// Length, sequence and port ID were filled in for the fake socket;
		// the batch numbers the messages itself.
		if err := e.b.add(m.Header.Type, m.Header.Flags, m.Data); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// queued notes a library call, which queued one message.
func (e *encoder) queued() error {
	e.pending++
	if e.pending < flushEvery {
		return nil
	}
	return e.flush()
}

// next is the index that the message of the next library call will have.
func (e *encoder) next() int { return e.b.messages() + e.pending }

// flush moves what the library queued since the last flush to the batch.
func (e *encoder) flush() error {
	if e.pending == 0 {
		return nil
	}
	before := e.b.messages()
	if err := e.c.Flush(); err != nil {
		return fmt.Errorf("google/nftables encoding of the last %d ops: %w", e.pending, err)
	}
	if got := e.b.messages() - before; got != e.pending {
		return fmt.Errorf("google/nftables queued %d messages for the last %d ops, want one each", got, e.pending)
	}
	e.pending = 0
	return nil
}
