package nft

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Stmt is one statement (match or action) of a rule. The set of statement
// kinds is deliberately small: each has an nft rendering (Render), a
// netlink encoding (compile.go) and a meaning for the packet tracer
// (nftrules/trace). Every kind emits the same bytecode shape nft itself
// emits for that text, so `nft list ruleset` prints our rules and
// `nft -f` accepts the print-out.
type Stmt interface {
	Render(f Family) string
}

// Field is a packet or metadata field used in matches and set lookups.
type Field int

const (
	FieldSaddr   Field = iota + 1 // ip saddr / ip6 saddr
	FieldDaddr                    // ip daddr / ip6 daddr
	FieldL4Proto                  // meta l4proto
	FieldDport                    // th dport
)

// Render returns the nft spelling of the field in a table of family f.
func (fl Field) Render(f Family) string {
	switch fl {
	case FieldSaddr:
		return string(f) + " saddr"
	case FieldDaddr:
		return string(f) + " daddr"
	case FieldL4Proto:
		return "meta l4proto"
	case FieldDport:
		return "th dport"
	}
	return fmt.Sprintf("field(%d)", int(fl))
}

func renderFields(fields []Field, f Family) string {
	parts := make([]string, len(fields))
	for i, fl := range fields {
		parts[i] = fl.Render(f)
	}
	return strings.Join(parts, " . ")
}

// MatchL4Proto matches the transport protocol: "meta l4proto tcp".
type MatchL4Proto struct{ Proto Protocol }

func (s MatchL4Proto) Render(f Family) string { return string(s.appendRender(nil, f)) }

func (s MatchL4Proto) appendRender(b []byte, _ Family) []byte {
	return append(append(b, "meta l4proto "...), s.Proto.String()...)
}

// MatchPrefix matches a source or destination address against a prefix:
// "ip saddr != 10.244.0.0/16".
type MatchPrefix struct {
	Field  Field // FieldSaddr or FieldDaddr
	Negate bool
	Prefix netip.Prefix
}

func (s MatchPrefix) Render(f Family) string {
	op := ""
	if s.Negate {
		op = "!= "
	}
	p := s.Prefix.String()
	if s.Prefix.IsSingleIP() {
		p = s.Prefix.Addr().String()
	}
	return s.Field.Render(f) + " " + op + p
}

// MatchFibSaddrLocal matches packets whose source address is one of the
// node's own (the node itself sent them): "fib saddr type local".
type MatchFibSaddrLocal struct{}

func (MatchFibSaddrLocal) Render(Family) string { return "fib saddr type local" }

// MatchCtStateNew matches the first packet of a connection: "ct state new".
type MatchCtStateNew struct{}

func (MatchCtStateNew) Render(Family) string { return "ct state new" }

// MatchCtStatusDNAT matches connections that were destination-NATed:
// "ct status dnat".
type MatchCtStatusDNAT struct{}

func (MatchCtStatusDNAT) Render(Family) string { return "ct status dnat" }

// MatchMarkUnset matches packets whose mark does not have Bits set:
// "meta mark & 0x00004000 == 0x00000000".
type MatchMarkUnset struct{ Bits uint32 }

func (s MatchMarkUnset) Render(Family) string {
	return fmt.Sprintf("meta mark & 0x%08x == 0x00000000", s.Bits)
}

// SetMarkBits ORs Bits into the packet mark: "meta mark set meta mark | 0x4000".
type SetMarkBits struct{ Bits uint32 }

func (s SetMarkBits) Render(Family) string {
	return fmt.Sprintf("meta mark set meta mark | 0x%08x", s.Bits)
}

// ClearMarkBits XORs Bits out of the packet mark (used after the bits were
// checked to be set): "meta mark set meta mark ^ 0x4000".
type ClearMarkBits struct{ Bits uint32 }

func (s ClearMarkBits) Render(Family) string {
	return fmt.Sprintf("meta mark set meta mark ^ 0x%08x", s.Bits)
}

// SetLookup matches when the concatenation of Fields is in the named set:
// "ip saddr . ip daddr @hairpin".
type SetLookup struct {
	Fields []Field
	Set    string
}

func (s SetLookup) Render(f Family) string { return renderFields(s.Fields, f) + " @" + s.Set }

// VmapLookup dispatches on the concatenation of Fields through a verdict map:
// "ip daddr . meta l4proto . th dport vmap @service-ips".
type VmapLookup struct {
	Fields []Field
	Map    string
}

func (s VmapLookup) Render(f Family) string { return renderFields(s.Fields, f) + " vmap @" + s.Map }

// DNATToEndpoint picks one of Count endpoints uniformly at random and
// destination-NATs to it: the endpoint address and port are the value of
// entry Offset+i (i random in [0,Count)) of the endpoint map. The rule must
// start with a MatchL4Proto (nft requires a transport match before a
// port-changing dnat).
//
//	dnat to numgen random mod 3 offset 16384 map @endpoints-tcp
type DNATToEndpoint struct {
	Count  uint32
	Offset uint32
	Map    string
}

func (s DNATToEndpoint) Render(f Family) string { return string(s.appendRender(nil, f)) }

// appendRender renders without fmt: every service chain's rule identity
// (its user data) holds this statement.
func (s DNATToEndpoint) appendRender(b []byte, f Family) []byte {
	b = append(append(append(b, "dnat "...), f...), " to numgen random mod "...)
	b = strconv.AppendUint(b, uint64(s.Count), 10)
	if s.Offset != 0 {
		b = strconv.AppendUint(append(b, " offset "...), uint64(s.Offset), 10)
	}
	return append(append(b, " map @"...), s.Map...)
}

// Masquerade source-NATs to the outgoing interface's address, with a fully
// random source port as kube-proxy does.
type Masquerade struct{}

func (Masquerade) Render(Family) string { return "masquerade fully-random" }

// Reject answers with an ICMP port unreachable (TCP clients see "connection
// refused" at once).
type Reject struct{}

func (Reject) Render(Family) string { return "reject" }

// RejectTCPReset answers a TCP packet with a reset; the rule must start
// with MatchL4Proto{TCP}. A reset fails a connect() at once, where an ICMP
// error during the handshake is only acted on after a retransmission.
type RejectTCPReset struct{}

func (RejectTCPReset) Render(Family) string { return "reject with tcp reset" }

// Counter counts packets and bytes of the rule.
type Counter struct{}

func (Counter) Render(Family) string { return "counter" }

// VerdictStmt ends a rule with a verdict: accept, drop, return, jump, goto.
type VerdictStmt struct{ Verdict }

func (s VerdictStmt) Render(Family) string { return s.Verdict.String() }

// JumpTo, GotoChain, DropStmt and ReturnStmt are shorthands for verdicts.
func JumpTo(chain string) Stmt    { return VerdictStmt{Verdict{Kind: Jump, Chain: chain}} }
func GotoChain(chain string) Stmt { return VerdictStmt{Verdict{Kind: Goto, Chain: chain}} }

var (
	DropStmt   Stmt = VerdictStmt{Verdict{Kind: Drop}}
	ReturnStmt Stmt = VerdictStmt{Verdict{Kind: Return}}
)

// Protocol is an IP transport protocol number.
type Protocol uint8

const (
	TCP  Protocol = 6
	UDP  Protocol = 17
	SCTP Protocol = 132
)

// Protocols lists the transport protocols Services may use.
var Protocols = []Protocol{TCP, UDP, SCTP}

func (p Protocol) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	case SCTP:
		return "sctp"
	}
	return fmt.Sprint(uint8(p))
}

// Opaque is a rule read back from the kernel, known only by the text we
// stored in its user data (or a placeholder for a rule that is not ours).
// It only ever appears in live rulesets: comparing it with a built rule's
// rendering tells whether the chain must be rewritten.
type Opaque struct{ Text string }

func (s Opaque) Render(Family) string { return s.Text }
