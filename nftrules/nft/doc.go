// Package nft is nftproxy's model of its nftables tables and the only
// code that talks to the kernel about them. It knows nftables, not
// Kubernetes: what the tables contain is decided by package nftrules.
//
//   - Ruleset, Table, Chain, Rule (of Stmts), Set, Element: a complete
//     description of our tables (one per family, named TableName), with
//     rendering to and parsing from nft syntax.
//   - Derivation: a ruleset made from another by changes, sharing what
//     did not change; Diff of a derived ruleset against its parent looks
//     at the changes only.
//   - Diff: a pure function from two Rulesets (live, desired) to a
//     Transaction, the minimal list of verbs that turns one into the other.
//   - Reconciler: reads our tables back into a Ruleset (typed by the
//     Layout that made them), applies a Transaction as one atomic netlink
//     batch, and watches for other processes changing our tables.
//
// Tests without a kernel use package nftfake (nftrules/nft/nftfake): an
// in-memory kernel driven like the Reconciler (Sync, Verify,
// WatchForeign, ReadLive, Cleanup) that applies each Transaction
// atomically and refuses what the kernel refuses (a missing object, an
// element that exists with another value, a chain or set still in use),
// records every transaction, fails on demand and renders itself with
// Ruleset.Render. It is a separate package because it needs only this
// package's exported API.
package nft
