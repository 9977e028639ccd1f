package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// elementDumpBuffer is the receive buffer of element dumps. The kernel
// sizes each message of a netlink dump after the largest buffer the socket
// has received into (capped at 32 KiB), and a hash set's dump restarts its
// walk from the first element for every message: with small messages,
// reading a set costs O(n²/message size). mdlayher/netlink sizes its buffer
// with a 4 KiB peek, which keeps messages at 4 KiB; reading the 100k-element
// hairpin set of 10k Services × 10 endpoints took about a second that way.
const elementDumpBuffer = 1 << 20

// elementReader reads set elements over one netlink socket with a large
// receive buffer; see elementDumpBuffer.
type elementReader struct {
	nl  *netlink.Conn
	buf []byte
}

// ReadLiveWithoutElements reads our tables like ReadLive, but returns the
// named sets without their elements (typed, empty): for readers that do not
// need them, such as --dump, which has no use for the hairpin set (one
// element per endpoint address, nearly half of all elements).
func (r *Reconciler) ReadLiveWithoutElements(sets ...string) (*Ruleset, error) {
	skip := map[string]bool{}
	for _, s := range sets {
		skip[s] = true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.readLiveSkipping(skip)
}

func (r *Reconciler) newElementReader() (*elementReader, error) {
	nl, err := r.dialNetfilter()
	if err != nil {
		return nil, err
	}
	return &elementReader{nl: nl, buf: make([]byte, elementDumpBuffer)}, nil
}

// dialNetfilter opens a netfilter netlink socket in the reconciler's
// namespace with forced large buffers (see batchSocketBuffer).
func (r *Reconciler) dialNetfilter() (*netlink.Conn, error) {
	nl, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: r.opts.NetNSFd})
	if err != nil {
		return nil, fmt.Errorf("dial netlink: %w", err)
	}
	if err := forceBuffers(nl); err != nil {
		nl.Close()
		return nil, err
	}
	return nl, nil
}

func (er *elementReader) Close() error { return er.nl.Close() }

// each calls fn with the key and data bytes of every element of a set,
// decoding the dump in place (the slices are only valid during fn).
func (er *elementReader) each(s *nftables.Set, fn func(key, val []byte) error) error {
	err := er.dump(unix.NFT_MSG_GETSETELEM, byte(s.Table.Family), []netlink.Attribute{
		{Type: unix.NFTA_SET_TABLE, Data: []byte(s.Table.Name + "\x00")},
		{Type: unix.NFTA_SET_NAME, Data: []byte(s.Name + "\x00")},
	}, func(b []byte) error { return eachElement(b, fn) })
	if err != nil {
		return fmt.Errorf("elements of %s: %w", s.Name, err)
	}
	return nil
}

// dump sends one nftables dump request and calls fn with the attributes of
// every message of the answer, in place in the receive buffer (valid only
// during fn). Reading into the large buffer keeps the kernel's messages
// large: see elementDumpBuffer.
func (er *elementReader) dump(msgType uint16, family byte, attrs []netlink.Attribute, fn func(attrs []byte) error) error {
	data, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		return err
	}
	req, err := er.nl.Send(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | msgType),
			Flags: netlink.Request | netlink.Dump,
		},
		Data: append([]byte{family, unix.NFNETLINK_V0, 0, 0}, data...),
	})
	if err != nil {
		return fmt.Errorf("request: %w", err)
	}
	raw, err := er.nl.SyscallConn()
	if err != nil {
		return err
	}
	for {
		var n int
		var rerr error
		err := raw.Read(func(fd uintptr) bool {
			n, _, rerr = unix.Recvfrom(int(fd), er.buf, unix.MSG_DONTWAIT)
			return !errors.Is(rerr, unix.EAGAIN)
		})
		if err == nil {
			err = rerr
		}
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(er.buf[:n])
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if m.Header.Seq != req.Header.Sequence {
				continue // a late answer to an earlier request
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if errno := -int32(nativeEndian.Uint32(m.Data)); errno != 0 {
						return syscall.Errno(errno)
					}
				}
				return nil
			}
			if len(m.Data) < 4 {
				return errors.New("short message")
			}
			if err := fn(m.Data[4:]); err != nil {
				return err
			}
		}
	}
}

// eachElement walks the attributes of one NFT_MSG_NEWSETELEM message.
func eachElement(b []byte, fn func(key, val []byte) error) error {
	return walkAttrs(b, func(typ uint16, p []byte) error {
		if typ != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
			return nil
		}
		return walkAttrs(p, func(_ uint16, el []byte) error {
			var key, val []byte
			if err := walkAttrs(el, func(typ uint16, p []byte) error {
				switch typ {
				case unix.NFTA_SET_ELEM_KEY:
					return walkAttrs(p, func(t uint16, d []byte) error {
						if t == unix.NFTA_DATA_VALUE {
							key = d
						}
						return nil
					})
				case unix.NFTA_SET_ELEM_DATA:
					return walkAttrs(p, func(t uint16, d []byte) error {
						if t == unix.NFTA_DATA_VALUE || t == unix.NFTA_DATA_VERDICT {
							val = d
						}
						return nil
					})
				}
				return nil
			}); err != nil {
				return err
			}
			return fn(key, val)
		})
	})
}

// walkAttrs calls fn for every netlink attribute in b (flag bits cleared
// from the type).
func walkAttrs(b []byte, fn func(typ uint16, payload []byte) error) error {
	for len(b) > 0 {
		if len(b) < nlaHeaderLen {
			return errors.New("truncated attribute")
		}
		l := int(binary.NativeEndian.Uint16(b))
		if l < nlaHeaderLen || l > len(b) {
			return fmt.Errorf("attribute length %d out of %d bytes", l, len(b))
		}
		typ := binary.NativeEndian.Uint16(b[2:]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
		if err := fn(typ, b[nlaHeaderLen:l]); err != nil {
			return err
		}
		b = b[min(len(b), (l+3)&^3):]
	}
	return nil
}
