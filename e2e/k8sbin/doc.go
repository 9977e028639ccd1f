// Package k8sbin is a separate Go module that builds the real Kubernetes
// binaries the e2e lab runs: etcd, kube-apiserver, kube-controller-manager,
// // kubectl, and for real-kubelet clusters kube-scheduler and kubelet. It is
// its own module so the project's go.mod never pulls in k8s.io/kubernetes;
// the lab builds these mains once into a version-keyed cache directory
// (see e2e/lab/binaries.go).
package k8sbin

// Versions of the components built here; the lab keys its binary cache on
// them, so bump them together with go.mod.
const (
	EtcdVersion       = "v3.7.3"
	KubernetesVersion = "v1.37.2"
)
