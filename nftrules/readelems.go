package nftrules

import (
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
	// skip names sets whose elements are not read.
	skip map[string]bool
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

// get returns every element of a set, decoded as nftables.Conn.GetSetElements
// decodes them (key and data bytes, verdicts undecoded).
func (er *elementReader) get(s *nftables.Set) ([]nftables.SetElement, error) {
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_SET_TABLE, Data: []byte(s.Table.Name + "\x00")},
		{Type: unix.NFTA_SET_NAME, Data: []byte(s.Name + "\x00")},
	})
	if err != nil {
		return nil, err
	}
	req, err := er.nl.Send(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETSETELEM),
			Flags: netlink.Request | netlink.Dump,
		},
		Data: append([]byte{byte(s.Table.Family), unix.NFNETLINK_V0, 0, 0}, attrs...),
	})
	if err != nil {
		return nil, fmt.Errorf("request elements of %s: %w", s.Name, err)
	}
	raw, err := er.nl.SyscallConn()
	if err != nil {
		return nil, err
	}
	var els []nftables.SetElement
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
			return nil, fmt.Errorf("receive elements of %s: %w", s.Name, err)
		}
		msgs, err := syscall.ParseNetlinkMessage(er.buf[:n])
		if err != nil {
			return nil, fmt.Errorf("elements of %s: %w", s.Name, err)
		}
		for _, m := range msgs {
			if m.Header.Seq != req.Header.Sequence {
				continue // a late answer to an earlier request
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return els, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if errno := -int32(nativeEndian.Uint32(m.Data)); errno != 0 {
						return nil, fmt.Errorf("elements of %s: %w", s.Name, syscall.Errno(errno))
					}
				}
				return els, nil
			}
			got, err := decodeElements(m.Data)
			if err != nil {
				return nil, fmt.Errorf("elements of %s: %w", s.Name, err)
			}
			els = append(els, got...)
		}
	}
}

// decodeElements decodes one NFT_MSG_NEWSETELEM message body: an answer
// to a dump, or a message google/nftables has queued.
func decodeElements(data []byte) ([]nftables.SetElement, error) {
	if len(data) < 4 {
		return nil, errors.New("short element message")
	}
	ad, err := netlink.NewAttributeDecoder(data[4:])
	if err != nil {
		return nil, err
	}
	var out []nftables.SetElement
	for ad.Next() {
		if ad.Type() != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
			continue
		}
		ad.Nested(func(list *netlink.AttributeDecoder) error {
			// The kernel numbers list entries NFTA_LIST_ELEM; google/nftables
			// numbers the entries it queues 1..n. Both are elements (the
			// kernel ignores the type), so the tests decode queued batches
			// here too.
			for list.Next() {
				var e nftables.SetElement
				list.Nested(func(el *netlink.AttributeDecoder) error {
					el.ByteOrder = bigEndian
					for el.Next() {
						switch el.Type() {
						case unix.NFTA_SET_ELEM_KEY:
							el.Nested(func(d *netlink.AttributeDecoder) error {
								e.Key = dataBytes(d)
								return nil
							})
						case unix.NFTA_SET_ELEM_DATA:
							el.Nested(func(d *netlink.AttributeDecoder) error {
								e.Val = dataBytes(d)
								return nil
							})
						case unix.NFTA_SET_ELEM_FLAGS:
							e.IntervalEnd = el.Uint32()&unix.NFT_SET_ELEM_INTERVAL_END != 0
						}
					}
					return nil
				})
				out = append(out, e)
			}
			return nil
		})
	}
	return out, ad.Err()
}

// dataBytes returns the payload of an NFTA_DATA_VALUE or (undecoded)
// NFTA_DATA_VERDICT attribute, as google/nftables does.
func dataBytes(d *netlink.AttributeDecoder) []byte {
	var b []byte
	for d.Next() {
		if t := d.Type(); t == unix.NFTA_DATA_VALUE || t == unix.NFTA_DATA_VERDICT {
			b = d.Bytes()
		}
	}
	return b
}
