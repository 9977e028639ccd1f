package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// sendBatch sends an encoded batch (batchbuf.go) on nl in one sendmsg
// and reads the kernel's verdict, instead of google/nftables' Flush.
//
// Flush (v0.3.0) asks for an ACK on every message and reads them one
// recvmsg at a time into fresh buffers, after copying every queued message
// into a second buffer: a cold sync of 10k Services × 10 endpoints (20,000
// messages, tens of MB) allocated about 190 MB just to send and confirm
// (BenchmarkKernelColdApply10kx10), most of it while the queued messages
// were still alive. Here the messages were encoded straight into the
// batch's chunks, which go to the kernel as the iovecs of one sendmsg,
// and only the last message asks for an ACK: the kernel processes a batch
// synchronously within sendmsg, reporting every failing message (errors
// are sent with or without NLM_F_ACK) and then acknowledging the last one,
// so that when sendmsg returns every answer is already queued, in order.
// nft reads its batches' answers the same way (select with a zero
// timeout).
//
// describe names the op of a message (by 0-based index) in errors; wrap,
// when not nil, is the test seam of Options.WrapBatchIO.
func sendBatch(nl *netlink.Conn, b *batchBuf, wrap func(BatchIO) BatchIO, describe func(msg int) string) error {
	n := b.messages()
	if n == 0 {
		return nil
	}
	chunks, err := b.finish()
	if err != nil {
		return fmt.Errorf("%w: %v", errNotSent, err)
	}
	raw, err := nl.SyscallConn()
	if err != nil {
		return fmt.Errorf("%w: netlink socket: %v", errNotSent, err)
	}
	var io BatchIO = socketIO{raw}
	if wrap != nil {
		io = wrap(io)
	}
	if err := io.Send(chunks); err != nil {
		size := 0
		for _, c := range chunks {
			size += len(c)
		}
		return fmt.Errorf("%w: sendmsg of a %d-byte batch: %v", errNotSent, size, err)
	}
	return readBatchAnswers(io, uint32(n+1), describe)
}

// BatchIO carries one encoded nftables batch to the kernel and its answers
// back. It is a test seam, nothing more: in production it is always the
// reconciler's netlink socket; tests wrap that (Options.WrapBatchIO) to
// inject the netlink faults a busy kernel or a broken socket produces
// (nftrules/kernel_faults_test.go).
type BatchIO interface {
	// Send sends the whole batch (begin and end markers included, the
	// messages in order across the chunks, none split) in one sendmsg.
	Send(batch [][]byte) error
	// Recv reads one datagram of answers without waiting; an error wrapping
	// EAGAIN means nothing more is queued.
	Recv(buf []byte) (int, error)
}

// socketIO is the BatchIO of a netlink socket.
type socketIO struct{ raw syscall.RawConn }

func (s socketIO) Send(batch [][]byte) error {
	var serr error
	if err := s.raw.Write(func(fd uintptr) bool {
		_, serr = unix.SendmsgBuffers(int(fd), batch, nil, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}, 0)
		return !errors.Is(serr, unix.EAGAIN)
	}); err != nil {
		return err
	}
	return serr
}

func (s socketIO) Recv(buf []byte) (int, error) {
	var n int
	var rerr error
	err := s.raw.Read(func(fd uintptr) bool {
		n, _, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
		return true // EAGAIN: nothing more is queued, which ends the reading
	})
	if err != nil {
		return 0, err
	}
	return n, rerr
}

// readBatchAnswers drains what the kernel queued for the batch just sent:
// errors of failing messages, and the ACK of the last message (sequence
// last). Anything else (no ACK, a short read) is an error: the caller then
// re-reads the kernel to learn whether the batch was committed.
func readBatchAnswers(io BatchIO, last uint32, describe func(int) string) error {
	rbuf := make([]byte, 64<<10)
	var errs []error
	acked := false
	for {
		n, err := io.Recv(rbuf)
		if errors.Is(err, unix.EAGAIN) {
			break
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("receive batch answers: %w", err))
			break
		}
		msgs, err := syscall.ParseNetlinkMessage(rbuf[:n])
		if err != nil {
			errs = append(errs, fmt.Errorf("parse batch answers: %w", err))
			break
		}
		for _, m := range msgs {
			if m.Header.Type != unix.NLMSG_ERROR || len(m.Data) < 4+unix.NLMSG_HDRLEN {
				continue
			}
			errno := -int32(binary.NativeEndian.Uint32(m.Data))
			// The answer quotes the header of the message it is about.
			seq := binary.NativeEndian.Uint32(m.Data[4+8:])
			typ := binary.NativeEndian.Uint16(m.Data[4+4:]) & 0xff
			if errno == 0 {
				acked = acked || seq == last
				continue
			}
			what := fmt.Sprintf("batch message %d (type %d)", seq, typ)
			if seq >= 2 && seq <= last {
				what = describe(int(seq) - 2)
			}
			errs = append(errs, fmt.Errorf("%s: %w", what, syscall.Errno(errno)))
		}
	}
	if len(errs) == 0 && !acked {
		errs = append(errs, errors.New("no acknowledgement of the batch"))
	}
	return errors.Join(errs...)
}

// nlmsgLen is the aligned length of a netlink message with n bytes of data.
func nlmsgLen(n int) int { return unix.NLMSG_HDRLEN + (n+unix.NLMSG_ALIGNTO-1)&^(unix.NLMSG_ALIGNTO-1) }

// putNlmsg appends one netlink message (port ID 0: the kernel fills it in).
func putNlmsg(b []byte, typ, flags uint16, seq uint32, data []byte) []byte {
	l := nlmsgLen(len(data))
	var h [unix.NLMSG_HDRLEN]byte
	binary.NativeEndian.PutUint32(h[0:], uint32(l))
	binary.NativeEndian.PutUint16(h[4:], typ)
	binary.NativeEndian.PutUint16(h[6:], flags)
	binary.NativeEndian.PutUint32(h[8:], seq)
	b = append(append(b, h[:]...), data...)
	for pad := l - unix.NLMSG_HDRLEN - len(data); pad > 0; pad-- {
		b = append(b, 0)
	}
	return b
}
