// Package nftrules is nftproxy's layout of its nftables tables: which
// chains, rules, sets and elements express the proxier's desired state
// (README.md in this directory shows what an admin sees).
//
//   - Build: a pure function from a model.State to an nft.Ruleset; a
//     Builder derives each ruleset from the previous one, rebuilding only
//     the service ports that changed (nft.Derivation).
//   - The names of our chains and sets, the skeleton every table starts
//     from, and the Layout the reconciler reads our tables back with
//     (NewReconciler).
//
// The nftables model, Diff and the netlink Reconciler are package
// nftrules/nft, which knows nothing of Kubernetes.
package nftrules
