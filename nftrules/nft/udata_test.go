package nft

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
)

// longRule is a rule of our vocabulary with n source prefixes, whose
// addresses have random-looking bytes (hard to compress).
func longRule(n int) Rule {
	var r Rule
	for i := range n {
		a := [16]byte{0xfd}
		for j := 1; j < 16; j++ {
			a[j] = byte((i+1)*(j+7)*2654435761>>13 | 1)
		}
		r.Stmts = append(r.Stmts, MatchPrefix{Field: FieldSaddr, Negate: true, Prefix: netip.PrefixFrom(netip.AddrFrom16(a), 128)})
	}
	r.Stmts = append(r.Stmts, SetLookup{Fields: []Field{FieldDaddr}, Set: "cluster-ips"}, JumpTo("mark-for-masquerade"))
	return r
}

// TestLongRuleTextIsKept: a rule text too long for the user data is kept
// deflated, so that the kernel hands back the full text (--dump and
// --trace parse it); before, only a hash was stored and such rules could
// not be shown.
func TestLongRuleTextIsKept(t *testing.T) {
	r := longRule(5)
	text := r.Render(IPv6)
	if len(text) <= maxIdentityText {
		t.Fatalf("test rule is only %d bytes", len(text))
	}
	id := ruleIdentity(IPv6, r)
	if id != text {
		t.Fatalf("identity of a %d-byte rule: %q, want its text", len(text), id)
	}
	u := ruleUserData(id)
	if len(u) > 256 {
		t.Fatalf("user data of %d bytes: the kernel keeps 256", len(u))
	}
	got, ok := identityFromUserData(u)
	if !ok || got != text {
		t.Fatalf("read back %q, %v; want the text", got, ok)
	}
	if back, err := ParseRule(IPv6, got); err != nil || back.Render(IPv6) != text {
		t.Errorf("parse of the read-back text: %v", err)
	}

	// Too long even deflated: a hash, which --dump and --trace name as such.
	huge := longRule(15)
	id = ruleIdentity(IPv6, huge)
	if !strings.HasPrefix(id, HashedIdentityPrefix) || len(ruleUserData(id)) > 256 {
		t.Errorf("identity of a %d-byte rule: %q", len(huge.Render(IPv6)), id)
	}
	if _, err := ParseRule(IPv6, id); err == nil || !strings.Contains(err.Error(), "rule text not recorded") {
		t.Errorf("ParseRule of a hashed identity: %v", err)
	}
}

// TestDeflatedUserDataIsBounded: a deflated identity planted by someone
// else cannot make the reader inflate more than maxInflatedText.
func TestDeflatedUserDataIsBounded(t *testing.T) {
	bomb := deflate(strings.Repeat("a", 100000))
	if len(bomb) > 255 {
		t.Fatalf("bomb of %d bytes does not fit a TLV", len(bomb))
	}
	u := append([]byte{udataRuleIdentityDeflated, byte(len(bomb))}, bomb...)
	if got, ok := identityFromUserData(u); ok {
		t.Errorf("inflated a %d-byte identity", len(got))
	}
	if _, ok := identityFromUserData(append([]byte{udataRuleIdentityDeflated, 3}, bytes.Repeat([]byte{0xff}, 3)...)); ok {
		t.Error("garbage inflated")
	}
}
