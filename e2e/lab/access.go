package lab

// ProxyKubeconfig is the kubeconfig every node's nftproxy runs with: the
// nftproxy ServiceAccount, bound to the RBAC of manifests/rbac.yaml.
func (l *Lab) ProxyKubeconfig() string { return l.proxyKubeconfig }

// ProxyBinary is the nftproxy binary the lab runs.
func (l *Lab) ProxyBinary() string { return l.bins.NFTProxy }
