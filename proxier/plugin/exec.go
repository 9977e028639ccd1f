package plugin

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/spf13/cobra"
	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/streaming/pkg/httpstream"
)

// run finds the node's nftproxy pod and executes command in it, streaming
// its output, as `kubectl exec` does.
func (o *pluginOptions) run(ctx context.Context, cmd *cobra.Command, command []string) error {
	if o.node == "" {
		return errors.New("--node is required (kubectl get nodes lists them)")
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules,
		&clientcmd.ConfigOverrides{CurrentContext: o.context}).ClientConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	client, err := kubernetes.NewForConfig(rest.AddUserAgent(cfg, pluginName))
	if err != nil {
		return fmt.Errorf("creating Kubernetes client: %w", err)
	}
	pod, err := proxyPod(ctx, client, o.namespace, o.daemonSet, o.node)
	if err != nil {
		return err
	}
	container := o.container
	if !hasContainer(pod, container) {
		if len(pod.Spec.Containers) != 1 {
			return fmt.Errorf("pod %s/%s has no container %q (use --container)", pod.Namespace, pod.Name, container)
		}
		container = pod.Spec.Containers[0].Name
	}
	req := client.CoreV1().RESTClient().Post().Namespace(pod.Namespace).Resource("pods").Name(pod.Name).
		SubResource("exec").VersionedParams(&v1.PodExecOptions{
		Container: container, Command: command, Stdout: true, Stderr: true,
	}, scheme.ParameterCodec)
	exec, err := executor(cfg, req.URL())
	if err != nil {
		return err
	}
	err = exec.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: cmd.OutOrStdout(), Stderr: cmd.ErrOrStderr()})
	if err != nil {
		return fmt.Errorf("running %q in pod %s/%s (node %s): %w", strings.Join(command, " "), pod.Namespace, pod.Name, o.node, err)
	}
	return nil
}

// executor prefers WebSockets and falls back to SPDY for servers that
// cannot upgrade, as kubectl does.
func executor(cfg *rest.Config, u *url.URL) (remotecommand.Executor, error) {
	ws, err := remotecommand.NewWebSocketExecutor(cfg, "GET", u.String())
	if err != nil {
		return nil, fmt.Errorf("websocket executor: %w", err)
	}
	spdy, err := remotecommand.NewSPDYExecutor(cfg, "POST", u)
	if err != nil {
		return nil, fmt.Errorf("SPDY executor: %w", err)
	}
	exec, err := remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
	if err != nil {
		return nil, fmt.Errorf("exec: %w", err)
	}
	return exec, nil
}

func hasContainer(p *v1.Pod, name string) bool {
	for _, c := range p.Spec.Containers {
		if c.Name == name {
			return true
		}
	}
	return false
}
