// Command coredns mirrors upstream coredns.go of github.com/coredns/coredns:
// the server with every in-tree plugin.
package main

import (
	_ "github.com/coredns/coredns/core/plugin" // every in-tree plugin
	"github.com/coredns/coredns/coremain"
)

func main() {
	coremain.Run()
}
