package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/nftproxy/nftproxy/e2e/netkit"
)

// probe asks the kernel of one namespace whether one element is in a set,
// with a single non-dump NFT_MSG_GETSETELEM: O(1) whatever the size of
// the ruleset, so it can be polled every millisecond without loading the
// machine (listing a 10k-element map would cost tens of milliseconds).
type probe struct {
	c *netlink.Conn
}

// newProbe opens a netfilter netlink socket inside ns (a socket keeps the
// namespace it was created in).
func newProbe(ns *netkit.NS) (*probe, error) {
	var c *netlink.Conn
	err := ns.Do(func() error {
		var err error
		c, err = netlink.Dial(unix.NETLINK_NETFILTER, nil)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("probe socket in %s: %w", ns.Name, err)
	}
	return &probe{c: c}, nil
}

func (p *probe) Close() error { return p.c.Close() }

// has reports whether key is an element of set in table (family ip or
// ip6). A missing table or set reads as absent.
func (p *probe) has(family byte, table, set string, key []byte) (bool, error) {
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.NFTA_SET_ELEM_LIST_TABLE, table)
	ae.String(unix.NFTA_SET_ELEM_LIST_SET, set)
	ae.Nested(unix.NFTA_SET_ELEM_LIST_ELEMENTS, func(ae *netlink.AttributeEncoder) error {
		ae.Nested(unix.NFTA_LIST_ELEM, func(ae *netlink.AttributeEncoder) error {
			ae.Nested(unix.NFTA_SET_ELEM_KEY, func(ae *netlink.AttributeEncoder) error {
				ae.Bytes(unix.NFTA_DATA_VALUE, key)
				return nil
			})
			return nil
		})
		return nil
	})
	attrs, err := ae.Encode()
	if err != nil {
		return false, err
	}
	msg := netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETSETELEM),
			Flags: netlink.Request, // no ACK: the reply (element or error) is the answer
		},
		Data: append([]byte{family, unix.NFNETLINK_V0, 0, 0}, attrs...),
	}
	_, err = p.c.Execute(msg)
	if err == nil {
		return true, nil
	}
	var oe *netlink.OpError
	if errors.As(err, &oe) && (errors.Is(oe.Err, unix.ENOENT)) {
		return false, nil
	}
	return false, err
}

// Key encodings of concatenated set keys: every field is padded to 4 bytes,
// ports are big-endian.

func addrBytes(a netip.Addr) []byte { return a.AsSlice() }

func protoBytes(p byte) []byte { return []byte{p, 0, 0, 0} }

func portBytes(port uint16) []byte {
	b := make([]byte, 4)
	binary.BigEndian.PutUint16(b, port)
	return b
}

func concat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func familyOf(a netip.Addr) byte {
	if a.Is4() {
		return unix.NFPROTO_IPV4
	}
	return unix.NFPROTO_IPV6
}
