package main

import (
	_ "github.com/google/nftables"
	_ "github.com/spf13/cobra"
	_ "github.com/vishvananda/netlink"
	_ "github.com/vishvananda/netns"
	_ "k8s.io/client-go/informers"
	_ "k8s.io/client-go/kubernetes"
	_ "k8s.io/client-go/tools/clientcmd"
	_ "k8s.io/client-go/tools/record"
	_ "k8s.io/client-go/kubernetes/fake"
	_ "k8s.io/klog/v2"
	_ "github.com/prometheus/client_golang/prometheus"
)

func main() {}
