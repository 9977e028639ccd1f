// Package netkit builds small test networks out of Linux network namespaces
// and sends real packets through them.
//
// It is meant for tests that run as root on a real kernel: the nftables
// kernel tests (nftrules) and the multi-node lab (e2e/lab). Every object it
// creates lives inside a network namespace created by the caller through
// New; nothing is ever changed in the host's root namespace. Namespaces are
// named with a caller-chosen prefix (for example "nktest-") so that the
// leftovers of a crashed run can be recognised and removed with
// CleanupPrefix.
//
// Building blocks:
//
//   - NS (ns.go): create, delete, enter (Do), run commands (Exec), sysctls.
//   - Tests (testns.go): one test's namespace (NewTestNS), and nft run in
//     a namespace (NftList, NftLoad).
//   - Links (link.go): veth pairs, bridges, addresses, routes, forwarding.
//   - Traffic (serve.go): TCP/UDP servers and clients whose sockets live
//     inside a namespace.
//   - SCTP (sctp.go): the kernel here has no SCTP sockets, so SCTP INIT
//     packets are built by hand and sent/captured on raw sockets.
//   - RoutedNode (node.go): the small routed node (client, node, pods)
//     the kernel tests of nftrules and proxier/app run on.
//   - Daemons (proc.go): long-running processes inside a namespace whose
//     own PID is known, so they can be stopped reliably.
//
// All functions are safe for use from parallel tests.
package netkit
