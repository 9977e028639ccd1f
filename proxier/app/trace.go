package app

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"

	"k8s.io/klog/v2"

	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/nftrules/trace"
)

// traceRequest is a parsed --trace SRC DST:PORT/PROTO.
type traceRequest struct {
	pkt  trace.Packet
	auto bool // path to be chosen from SRC
}

// traceRequest parses --trace's value and the positional argument:
// "--trace 10.244.1.5 10.96.0.10:80/tcp" or "--trace '10.244.1.5 10.96.0.10:80/tcp'".
// The protocol defaults to tcp.
func (o *opsOptions) traceRequest(args []string) (traceRequest, error) {
	words := append(strings.Fields(o.trace), args...)
	if len(words) != 2 {
		return traceRequest{}, fmt.Errorf("--trace wants SRC DST:PORT/PROTO, got %q", strings.Join(words, " "))
	}
	src, err := netip.ParseAddr(words[0])
	if err != nil {
		return traceRequest{}, fmt.Errorf("--trace source %q: %w", words[0], err)
	}
	dst, protoName, hasProto := strings.Cut(words[1], "/")
	proto := nft.TCP
	if hasProto {
		if proto, err = nft.ParseProtocol(protoName); err != nil {
			return traceRequest{}, fmt.Errorf("--trace destination %q: %w", words[1], err)
		}
		if proto != nft.TCP && proto != nft.UDP && proto != nft.SCTP {
			return traceRequest{}, fmt.Errorf("--trace destination %q: protocol must be tcp, udp or sctp", words[1])
		}
	}
	ap, err := netip.ParseAddrPort(dst)
	if err != nil {
		return traceRequest{}, fmt.Errorf("--trace destination %q (want ADDR:PORT/PROTO, [ADDR6]:PORT/PROTO): %w", words[1], err)
	}
	src, daddr := src.Unmap(), ap.Addr().Unmap()
	if src.Is4() != daddr.Is4() {
		return traceRequest{}, fmt.Errorf("--trace %s %s: source and destination are of different IP families", src, ap)
	}
	req := traceRequest{pkt: trace.Packet{Src: src, Dst: daddr, Proto: proto, DstPort: ap.Port()}}
	switch o.tracePath {
	case "auto":
		req.auto = true
	case "forwarded":
		req.pkt.Path = trace.Forwarded
	case "local":
		req.pkt.Path = trace.LocalOut
	case "to-local":
		req.pkt.Path = trace.ToLocal
	default:
		return traceRequest{}, fmt.Errorf("--trace-path %q: want auto, forwarded, local or to-local", o.tracePath)
	}
	return req, nil
}

// runTrace follows the packet through the live tables of the current
// network namespace and prints the explanation.
func runTrace(out io.Writer, req traceRequest) error {
	if req.auto {
		local, err := isLocalAddr(req.pkt.Src)
		if err != nil {
			return err
		}
		req.pkt.Path = trace.Forwarded
		if local {
			req.pkt.Path = trace.LocalOut
		}
	}
	rec := openNftables()
	defer closeNftables(rec)
	return traceWith(out, req.pkt, rec)
}

// traceWith traces pkt (its path decided) through the tables rec reads.
func traceWith(out io.Writer, pkt trace.Packet, rec ourTables) error {
	live, err := rec.ReadLive()
	if err != nil {
		return fmt.Errorf("trace: read our tables: %w", err)
	}
	f := nft.FamilyOf(pkt.Dst)
	if _, ok := live.Tables[f]; !ok {
		fmt.Fprintf(out, "packet: %s\nno table %s %s: nftproxy does not touch this packet\nresult: accept\n", pkt, f, nft.TableName)
		return nil
	}
	rs, perr := nft.ParseRuleset(live)
	if perr != nil {
		// The tracer stops with an error if the packet meets such a rule.
		klog.InfoS("Our tables hold rules nftproxy did not write; the next full sync replaces them", "err", perr)
	}
	res, err := trace.Trace(rs, pkt)
	if err != nil {
		if perr != nil {
			err = fmt.Errorf("%w (%v)", err, perr)
		}
		return fmt.Errorf("trace: %w", err)
	}
	if _, err := io.WriteString(out, res.Explain()); err != nil {
		return fmt.Errorf("write trace: %w", err)
	}
	return nil
}

// isLocalAddr reports whether a is an address of this host (in the
// current network namespace).
func isLocalAddr(a netip.Addr) (bool, error) {
	if a.IsLoopback() {
		return true, nil
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false, fmt.Errorf("list local addresses: %w", err)
	}
	for _, ia := range addrs {
		if n, ok := ia.(*net.IPNet); ok {
			if la, ok := netip.AddrFromSlice(n.IP); ok && la.Unmap() == a {
				return true, nil
			}
		}
	}
	return false, nil
}
