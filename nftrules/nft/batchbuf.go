package nft

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// batchBuf is one nftables batch as it is encoded: every message framed,
// numbered and padded as the kernel will read it, between the batch begin
// and end markers, in chunks that sendBatch hands to one sendmsg as its
// iovecs (one sendmsg, one skb, one batch: the transaction stays atomic).
//
// Encoding straight into the batch keeps a cold sync's memory at one copy
// of the transaction: queueing the messages and then copying them into one
// buffer (as before) held two at the commit, and a contiguous buffer grown
// by doubling would copy and discard as much again. Chunks never move once
// written; a message never spans two.
type batchBuf struct {
	chunks [][]byte
	n      int // messages, markers excluded
	last   int // offset of the last message in the last chunk
	next   int // capacity of the next chunk
	done   bool
}

// Chunk sizes grow from minChunk (a one-change transaction is a few
// hundred bytes) to maxChunk (at 1 MiB, 1,024 iovecs, the kernel's
// UIO_MAXIOV, carry a 1 GiB batch).
const (
	minChunk = 4 << 10
	maxChunk = 1 << 20
)

// maxBatchChunks is the kernel's limit on the iovecs of one sendmsg.
const maxBatchChunks = 1024

func newBatchBuf() *batchBuf {
	b := &batchBuf{next: minChunk}
	b.marker(unix.NFNL_MSG_BATCH_BEGIN, 1)
	return b
}

// nfgenSubsys is the nfgenmsg of the batch markers.
var nfgenSubsys = []byte{unix.AF_UNSPEC, 0, 0, unix.NFNL_SUBSYS_NFTABLES}

func (b *batchBuf) marker(typ uint16, seq uint32) {
	c := b.room(nlmsgLen(len(nfgenSubsys)))
	b.chunks[len(b.chunks)-1] = putNlmsg(c, typ, uint16(netlink.Request), seq, nfgenSubsys)
}

// room returns the last chunk, after starting a new one if it has less
// than n bytes free.
func (b *batchBuf) room(n int) []byte {
	if k := len(b.chunks); k > 0 && cap(b.chunks[k-1])-len(b.chunks[k-1]) >= n {
		return b.chunks[k-1]
	}
	size := max(b.next, n)
	b.next = min(2*b.next, maxChunk)
	b.chunks = append(b.chunks, make([]byte, 0, size))
	return b.chunks[len(b.chunks)-1]
}

// add appends one message whose payload is the concatenation of parts.
// The kernel is asked to acknowledge only the last message (finish).
func (b *batchBuf) add(typ netlink.HeaderType, flags netlink.HeaderFlags, parts ...[]byte) error {
	if b.done {
		return errors.New("batch already finished")
	}
	size := 0
	for _, p := range parts {
		size += len(p)
	}
	if size > maxMessageData {
		return fmt.Errorf("netlink message (type %d) of %d bytes: its attributes may exceed the 16-bit netlink attribute length (%d bytes); not sent",
			typ&0xff, size, maxMessageData)
	}
	l := nlmsgLen(size)
	c := b.room(l)
	off := len(c)
	var h [unix.NLMSG_HDRLEN]byte
	binary.NativeEndian.PutUint32(h[0:], uint32(l))
	binary.NativeEndian.PutUint16(h[4:], uint16(typ))
	binary.NativeEndian.PutUint16(h[6:], uint16(flags&^netlink.Acknowledge))
	binary.NativeEndian.PutUint32(h[8:], uint32(b.n+2)) // 1 is the batch begin
	c = append(c, h[:]...)
	for _, p := range parts {
		c = append(c, p...)
	}
	for pad := l - unix.NLMSG_HDRLEN - size; pad > 0; pad-- {
		c = append(c, 0)
	}
	b.chunks[len(b.chunks)-1] = c
	b.last = off
	b.n++
	return nil
}

// lastMessage returns the type and payload of the last message added
// (the payload aliases the batch and is valid until the next add).
func (b *batchBuf) lastMessage() (netlink.HeaderType, netlink.HeaderFlags, []byte, bool) {
	if b.n == 0 {
		return 0, 0, nil, false
	}
	c := b.chunks[len(b.chunks)-1]
	m := c[b.last:]
	l := int(binary.NativeEndian.Uint32(m))
	// The payload's unpadded length is not kept: trailing padding is part
	// of what is returned (at most 3 zero bytes after the last attribute).
	return netlink.HeaderType(binary.NativeEndian.Uint16(m[4:])), netlink.HeaderFlags(binary.NativeEndian.Uint16(m[6:])), m[unix.NLMSG_HDRLEN:l], true
}

// dropLast removes the last message added (to add it again changed).
func (b *batchBuf) dropLast() {
	k := len(b.chunks) - 1
	b.chunks[k] = b.chunks[k][:b.last]
	b.n--
}

// messages returns the number of messages added, markers excluded.
func (b *batchBuf) messages() int { return b.n }

// finish asks for the ACK of the last message, appends the batch end and
// returns the chunks to send.
func (b *batchBuf) finish() ([][]byte, error) {
	if !b.done {
		if b.n > 0 {
			c := b.chunks[len(b.chunks)-1]
			flags := binary.NativeEndian.Uint16(c[b.last+6:])
			binary.NativeEndian.PutUint16(c[b.last+6:], flags|uint16(netlink.Acknowledge))
		}
		b.marker(unix.NFNL_MSG_BATCH_END, uint32(b.n+2))
		b.done = true
	}
	if len(b.chunks) > maxBatchChunks {
		return nil, fmt.Errorf("a batch of %d chunks is more than one sendmsg carries (%d)", len(b.chunks), maxBatchChunks)
	}
	return b.chunks, nil
}
