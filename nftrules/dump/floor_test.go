package dump_test

import (
	"errors"
	"fmt"
	"syscall"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/nftproxy/nftproxy/nftrules/nft"
)

// rawDumper makes the kernel dump what --dump reads, receiving the
// messages into one large buffer and looking at nothing but their
// headers: the time the kernel itself needs to dump our table, the floor
// under any reader.
type rawDumper struct {
	nl  *netlink.Conn
	buf []byte
}

func newRawDumper(nsFd int) (*rawDumper, error) {
	nl, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: nsFd})
	if err != nil {
		return nil, err
	}
	raw, err := nl.SyscallConn()
	if err != nil {
		nl.Close()
		return nil, err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
	}); err != nil || serr != nil {
		nl.Close()
		return nil, errors.Join(err, serr)
	}
	return &rawDumper{nl: nl, buf: make([]byte, 1<<20)}, nil
}

// dump sends one dump request and reads until its end; it returns the
// bytes and messages received.
func (d *rawDumper) dump(msgType uint16, family byte, attrs []netlink.Attribute) (bytes, msgs int, err error) {
	data, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		return 0, 0, err
	}
	req, err := d.nl.Send(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | msgType), Flags: netlink.Request | netlink.Dump},
		Data:   append([]byte{family, unix.NFNETLINK_V0, 0, 0}, data...),
	})
	if err != nil {
		return 0, 0, err
	}
	raw, err := d.nl.SyscallConn()
	if err != nil {
		return 0, 0, err
	}
	for {
		var n int
		var rerr error
		if err := raw.Read(func(fd uintptr) bool {
			n, _, rerr = unix.Recvfrom(int(fd), d.buf, unix.MSG_DONTWAIT)
			return !errors.Is(rerr, unix.EAGAIN)
		}); err != nil || rerr != nil {
			return bytes, msgs, errors.Join(err, rerr)
		}
		bytes += n
		ms, err := syscall.ParseNetlinkMessage(d.buf[:n])
		if err != nil {
			return bytes, msgs, err
		}
		for _, m := range ms {
			if m.Header.Seq != req.Header.Sequence {
				continue
			}
			if m.Header.Type == unix.NLMSG_DONE || m.Header.Type == unix.NLMSG_ERROR {
				return bytes, msgs, nil
			}
			msgs++
		}
	}
}

// dumpTable dumps the table's chains, rules, set definitions and the
// elements of sets (the requests --dump makes).
func (d *rawDumper) dumpTable(family byte, sets []string) (bytes, msgs int, err error) {
	table := netlink.Attribute{Type: unix.NFTA_SET_TABLE, Data: []byte(nft.TableName + "\x00")}
	reqs := []struct {
		typ   uint16
		attrs []netlink.Attribute
	}{
		{unix.NFT_MSG_GETCHAIN, []netlink.Attribute{table}},
		{unix.NFT_MSG_GETRULE, []netlink.Attribute{table}},
		{unix.NFT_MSG_GETSET, []netlink.Attribute{table}},
	}
	for _, s := range sets {
		reqs = append(reqs, struct {
			typ   uint16
			attrs []netlink.Attribute
		}{unix.NFT_MSG_GETSETELEM, []netlink.Attribute{table, {Type: unix.NFTA_SET_NAME, Data: []byte(s + "\x00")}}})
	}
	for _, r := range reqs {
		b, m, err := d.dump(r.typ, family, r.attrs)
		bytes, msgs = bytes+b, msgs+m
		if err != nil {
			return bytes, msgs, fmt.Errorf("dump %d: %w", r.typ, err)
		}
	}
	return bytes, msgs, nil
}

// elementSets names the sets of a live ruleset whose elements --dump
// reads, i.e. all but skip.
func elementSets(b *testing.B, rs *nft.Ruleset, skip string) []string {
	b.Helper()
	var names []string
	for _, s := range rs.Tables[nft.IPv4].SortedSets() {
		if s.Name != skip && !s.Dynamic {
			names = append(names, s.Name)
		}
	}
	return names
}
