// Package images is a separate Go module holding the tooling of the
// real-kubelet conformance cluster that the project's own go.mod must not
// carry: mkimage (image archives from files, with
// github.com/google/go-containerregistry, no Docker engine and no
// registry), a pause binary for the pause image, and CoreDNS built from its
// Go module. The lab builds and runs them (e2e/lab/images.go).
package images

// CoreDNSVersion is the CoreDNS module version built here (see go.mod).
const CoreDNSVersion = "v1.13.1"
