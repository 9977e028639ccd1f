// Package lab runs a small real Kubernetes cluster made of Linux network
// namespaces, for nftproxy's e2e tests and `make demo`.
//
// A lab is: a real control plane (etcd, kube-apiserver, and a
// kube-controller-manager running only the EndpointSlice, mirroring,
// ServiceAccount, namespace and garbage-collector controllers) in one
// namespace; N node namespaces on a shared underlay bridge (which itself
// lives in a lab "underlay" namespace), each with its own dual-stack pod
// CIDR, a pod bridge and routes to the other nodes' pods (routed or VXLAN);
// pods as namespaces on their node's bridge running e2e/testserver; and
// external client namespaces on the underlay. The lab plays kubelet: it
// creates Node and Pod objects and patches pod status so the real
// EndpointSlice controller builds slices, and it runs the real nftproxy
// binary in every node namespace with a least-privilege ServiceAccount.
//
// Nothing is changed in the host's root namespace and every route ends
// inside the lab, so no lab packet leaves the machine. All namespaces are
// named <prefix><role> (default prefix "nftlab-"); a new lab first removes
// the leftovers of a crashed run with the same prefix.
//
// Files: options.go (Options, modes), addr.go (address plan),
// binaries.go (build/cache of control-plane binaries), topology.go and
// vxlan.go (namespaces, links, routes), certs.go, controlplane.go,
// client.go (API client through the lab network), kubelet.go (Node/Pod
// objects), deploy.go (test deployments), service.go, proxy.go (nftproxy
// per node), dial.go (traffic), debug.go (rules, logs, failure dumps),
// state.go (demo state file, Down), lab.go (Start/Stop), faults.go (kill
// -9 of nftproxy, control-plane restarts, a node's partition from the
// apiserver), apirewrite.go (objects changed on their way to one node's
// nftproxy, for input the apiserver refuses) and etcdput.go (objects
// written straight into etcd, for scale) for the fault suite.
package lab
