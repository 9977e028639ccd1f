package nft

// objRef names a chain or a set of one of our tables.
type objRef struct {
	family Family
	name   string
}

// skeletonDiff lists what differs between a skeleton read and an applied
// ruleset (see Verify): the objects to confirm under the lock, or a
// table, which is read by name in one request and so is never wrong
// because of an interrupted dump.
type skeletonDiff struct {
	tables       bool
	chains, sets []objRef
}

func (d skeletonDiff) n() int { return len(d.chains) + len(d.sets) }

// skeletonSuspects compares two rulesets' tables, set definitions and
// chains with their rules, elements aside.
func skeletonSuspects(have, want *Ruleset) skeletonDiff {
	var d skeletonDiff
	if len(have.Tables) != len(want.Tables) {
		d.tables = true
		return d
	}
	for f, wt := range want.Tables {
		ht, ok := have.Tables[f]
		if !ok {
			d.tables = true
			return d
		}
		for name, ws := range wt.Sets.All() {
			if hs := ht.Sets.Get(name); hs == nil || !hs.SameShape(ws) {
				d.sets = append(d.sets, objRef{f, name})
			}
		}
		for name := range ht.Sets.Keys() {
			if wt.Sets.Get(name) == nil {
				d.sets = append(d.sets, objRef{f, name})
			}
		}
		for name, wc := range wt.Chains.All() {
			if hc := ht.Chains.Get(name); hc == nil || !sameChain(f, hc, wc) {
				d.chains = append(d.chains, objRef{f, name})
			}
		}
		for name := range ht.Chains.Keys() {
			if wt.Chains.Get(name) == nil {
				d.chains = append(d.chains, objRef{f, name})
			}
		}
	}
	return d
}

// diffRawKeys returns the encoded keys in which a set read raw differs
// from a built set: missing from the kernel, extra there, or with another
// value; over is true (and keys incomplete) past limit keys. Unlike
// diffRaw it reads only want's element groups (never its lazily built
// index, nor its reference counts, which the next Build updates in
// place), so that it can run while a Builder derives the next ruleset
// from want's. It consumes have: each kernel element found is marked
// (keys several owners share are found again).
func diffRawKeys(have, want *Set, limit int) (keys []string, over bool) {
	var kbuf, vbuf [80]byte
	add := func(k string) {
		if len(keys) == limit {
			over = true
			return
		}
		keys = append(keys, k)
	}
	c := &candidate{s: want}
	want.groups.each(func(_ string, g *elemGroup) {
		c.eachOf(g, func(c *candidate) {
			if over {
				return
			}
			k, err := c.key(kbuf[:0])
			if err != nil {
				add(string(k)) // unencodable: its re-read fails, and the error makes a full sync
				return
			}
			r, ok := have.raw[string(k)]
			switch {
			case !ok:
				add(string(k)) // missing from the kernel
			case r.found():
			case !c.sameValue(r.val, vbuf[:0]):
				add(string(k))
				have.raw[string(k)] = rawElement{val: foundMark}
			default:
				have.raw[string(k)] = rawElement{val: foundMark}
			}
		})
	})
	for k, r := range have.raw {
		if !over && !r.found() {
			add(k) // in the kernel, not wanted
		}
	}
	return keys, over
}

// foundMark replaces the value of a kernel element diffRawKeys found.
var foundMark = []byte{0}

func (r rawElement) found() bool { return len(r.val) == 1 && &r.val[0] == &foundMark[0] }
