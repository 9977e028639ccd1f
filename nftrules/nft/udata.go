package nft

import (
	"bytes"
	"compress/flate"
	"crypto/sha256"
	"encoding/hex"
	"io"
)

// Rule user data: nft ignores TLV types it does not know, so we keep the
// rule's identity, its nft text, there and can compare live rules with
// built ones, and show them (--dump, --trace), without decoding bytecode.
// The kernel keeps at most 256 bytes of user data per rule: a longer text
// is stored deflated (the names in our long rules repeat each other, so
// they compress well), and only a text that does not fit even so is
// stored as a hash, which identifies it but cannot be shown.
const (
	udataRuleIdentity         = 0x7e // the text
	udataRuleIdentityDeflated = 0x7f // the text, deflated (raw RFC 1951)
)

// maxIdentityText bounds the identity kept in a rule's user data (the
// kernel allows 256 bytes of user data; one TLV holds at most 255).
const maxIdentityText = 240

// maxInflatedText bounds what a deflated identity may inflate to: user
// data is anyone's to write (a rule planted in our chain), so it is not
// trusted to be small.
const maxInflatedText = 4096

// HashedIdentityPrefix starts the identity of a rule whose text did not
// fit its user data even deflated: the text itself is not in the kernel.
const HashedIdentityPrefix = "sha256:"

// Identity is what the kernel keeps of a rule (in its user data) and hands
// back when our tables are read: the rule's nft text, or a hash of a text
// too long to keep even deflated (HashedIdentityPrefix).
func (r Rule) Identity(f Family) string { return ruleIdentity(f, r) }

func ruleIdentity(f Family, r Rule) string {
	text := r.Render(f)
	if len(text) <= maxIdentityText || len(deflate(text)) <= maxIdentityText {
		return text
	}
	sum := sha256.Sum256([]byte(text))
	return HashedIdentityPrefix + hex.EncodeToString(sum[:16])
}

// ruleUserData encodes an identity (what ruleIdentity returned).
func ruleUserData(identity string) []byte {
	typ, b := byte(udataRuleIdentity), []byte(identity)
	if len(b) > maxIdentityText {
		typ, b = udataRuleIdentityDeflated, deflate(identity)
	}
	return append([]byte{typ, byte(len(b))}, b...)
}

// identityFromUserData decodes the identity from a rule's user data (ok
// false when there is none, or it is malformed).
func identityFromUserData(u []byte) (string, bool) {
	for len(u) >= 2 {
		t, l := u[0], int(u[1])
		if 2+l > len(u) {
			return "", false
		}
		switch t {
		case udataRuleIdentity:
			return string(u[2 : 2+l]), true
		case udataRuleIdentityDeflated:
			return inflate(u[2 : 2+l])
		}
		u = u[2+l:]
	}
	return "", false
}

func deflate(text string) []byte {
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, flate.BestCompression) // error only for a bad level
	_, _ = w.Write([]byte(text))
	_ = w.Close()
	return b.Bytes()
}

func inflate(b []byte) (string, bool) {
	r := flate.NewReader(bytes.NewReader(b))
	defer r.Close()
	out, err := io.ReadAll(io.LimitReader(r, maxInflatedText+1))
	if err != nil || len(out) > maxInflatedText {
		return "", false
	}
	return string(out), true
}
