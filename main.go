// Command nftproxy is a kube-proxy replacement that programs nftables
// directly over netlink. It runs on every node (a DaemonSet). Installed as
// kubectl-nftproxy, it is the kubectl plugin instead.
package main

import (
	"os"

	"k8s.io/klog/v2"

	"github.com/nftproxy/nftproxy/proxier/app"
	"github.com/nftproxy/nftproxy/proxier/plugin"
)

func main() {
	cmd := app.NewCommand()
	if plugin.IsPlugin(os.Args[0]) { // installed as kubectl-nftproxy: kubectl nftproxy ...
		cmd = plugin.NewCommand()
	}
	err := cmd.Execute()
	klog.Flush()
	if err != nil {
		os.Exit(1)
	}
}
