// Package nftfake is an in-memory fake of the nftables kernel for tests:
// Fake holds our tables and is driven like *nft.Reconciler (Sync, Verify,
// WatchForeign, ReadLive, ReadLiveWithoutElements, Cleanup), so that the
// proxier, --dump, --cleanup and the Builder's diffs are tested without
// root, in milliseconds. The kernel tests stay the proof with packets;
// the fake is for speed and for the edge cases a kernel cannot be made to
// show on demand (a refused transaction, a failing sync, a foreign edit).
//
// Each transaction is applied as the kernel applies a netlink batch: op
// by op, each seeing what the ops before it did, and atomically: if one op
// is refused, the changes of the ops before it are undone (from a log, so
// a transaction costs what it changes, not the size of the sets it
// touches), the state is as before and the error names the op, wrapping
// the errno the kernel answers with (errors.Is(err, unix.EBUSY)). Refused,
// as by the kernel:
//
//   - anything in a table that does not exist (ENOENT);
//   - adding a set that exists with another type, or a chain that exists
//     with another hook (EEXIST); adding one that exists with the same
//     type keeps its contents;
//   - flushing or deleting a chain, deleting a set, adding or deleting
//     elements of a set that does not exist (ENOENT);
//   - a rule naming a chain or set that does not exist (ENOENT), jumping
//     to a base chain (EOPNOTSUPP), using as a verdict map (vmap) what is
//     not one, as a data map (map) what is not one (EINVAL), updating
//     (update @set) a set that is not dynamic (EOPNOTSUPP);
//   - adding an element that exists with another value (EEXIST; the same
//     value is a no-op), that does not fit the set's type (EINVAL), or
//     whose verdict names a missing chain or a base chain;
//   - deleting an element that does not exist (ENOENT);
//   - deleting a chain that still has rules, or that a rule or verdict
//     element still names, or a set a rule still uses (EBUSY). Recent
//     kernels delete a chain's rules with it; the fake refuses as older
//     ones do, which Diff satisfies by flushing first.
//
// Deleting a table deletes everything in it. Not modelled: expression
// type checks beyond the kind of map, jump loops, hook and chain type
// compatibility, set sizes and timeouts.
//
// Besides, the Fake records every transaction (Records: the ruleset asked
// for, the transaction, objects and messages, the error), fails the next
// call on demand (FailNext), holds syncs back (BeforeSync), applies other
// processes' changes and reports them to watchers (Foreign), renders its
// state in nft syntax (Dump) and compares it with a ruleset (Compare).
//
// It is its own package rather than part of nft because it needs nothing
// but nft's exported API, like any other caller: it cannot lean on the
// reconciler's internals (which change independently of it) nor make them
// harder to change, and it keeps a test double out of the package the
// daemon is built from. nft's external tests (package nft_test) may use it;
// nft's internal ones cannot (import cycle).
package nftfake
