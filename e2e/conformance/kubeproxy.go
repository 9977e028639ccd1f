package main

import (
	"context"
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	v1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/nftproxy/nftproxy/e2e/lab"
)

//go:embed kube-proxy.yaml
var kubeProxyYAML string

// deployKubeProxy runs upstream kube-proxy (nftables mode) as kubeadm's
// DaemonSet, with nftproxy's configuration file, instead of nftproxy.
func (c *cluster) deployKubeProxy(ctx context.Context) error {
	conf, err := shippedConfig(c.root)
	if err != nil {
		return err
	}
	indented := "    " + strings.ReplaceAll(conf, "\n", "\n    ")
	y := strings.NewReplacer("@IMAGE@", lab.KubeProxyImage, "@CONFIG@", indented,
		"@APIHOST@", lab.APIServerAddress().String(), "@APIPORT@", strconv.Itoa(lab.APIServerPort)).Replace(kubeProxyYAML)
	out, err := c.kubectl(ctx, y, "apply", "-f", "-")
	if err != nil {
		return err
	}
	step("kubectl apply (kube-proxy, kubeadm's DaemonSet):\n%s", out)
	return c.waitProxy(ctx, "kube-proxy", "kube-proxy")
}

// shippedConfig is config.conf of manifests/configmap.yaml.
func shippedConfig(root string) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, "manifests", "configmap.yaml"))
	if err != nil {
		return "", err
	}
	var cm v1.ConfigMap
	if err := yaml.Unmarshal(b, &cm); err != nil {
		return "", fmt.Errorf("manifests/configmap.yaml: %w", err)
	}
	conf, ok := cm.Data["config.conf"]
	if !ok {
		return "", fmt.Errorf("manifests/configmap.yaml has no config.conf")
	}
	return conf, nil
}
