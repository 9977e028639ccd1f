package main

import (
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/nftproxy/nftproxy/e2e/lab"
	"github.com/nftproxy/nftproxy/e2e/netkit"
)

// benchClient is an unthrottled admin client whose connections are made
// inside ns (the harness itself stays in the host namespace, which has no
// route to the lab).
func benchClient(kubeconfig string, ns *netkit.NS) (kubernetes.Interface, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 5000, 10000
	cfg.Dial = lab.DialerIn(ns)
	return kubernetes.NewForConfig(cfg)
}
