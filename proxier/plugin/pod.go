package plugin

import (
	"context"
	"fmt"
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// proxyPod finds the pod of the DaemonSet namespace/name running on node,
// with an error that says what to do when there is none.
func proxyPod(ctx context.Context, client kubernetes.Interface, namespace, name, node string) (*v1.Pod, error) {
	ds, err := client.AppsV1().DaemonSets(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("DaemonSet %s/%s not found: is nftproxy deployed (kubectl apply -k manifests/)? "+
			"If it runs under another name or namespace, pass --daemonset and --namespace", namespace, name)
	}
	if err != nil {
		return nil, fmt.Errorf("getting DaemonSet %s/%s: %w", namespace, name, err)
	}
	sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("DaemonSet %s/%s has an invalid selector: %w", namespace, name, err)
	}
	pods, err := client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, fmt.Errorf("listing pods of DaemonSet %s/%s: %w", namespace, name, err)
	}
	var onNode []*v1.Pod
	var nodes []string
	for i := range pods.Items {
		p := &pods.Items[i]
		if !ownedBy(p, ds.UID) {
			continue
		}
		if p.Spec.NodeName == node {
			onNode = append(onNode, p)
		} else if p.Spec.NodeName != "" {
			nodes = append(nodes, p.Spec.NodeName)
		}
	}
	if len(onNode) == 0 {
		return nil, noPodError(ctx, client, namespace, name, node, nodes)
	}
	// A running pod that is not being deleted; during a rolling update the
	// old pod may still be terminating next to the new one.
	slices.SortFunc(onNode, func(a, b *v1.Pod) int { return b.CreationTimestamp.Compare(a.CreationTimestamp.Time) })
	for _, p := range onNode {
		if p.Status.Phase == v1.PodRunning && p.DeletionTimestamp == nil {
			return p, nil
		}
	}
	p := onNode[0]
	reason := string(p.Status.Phase)
	if p.DeletionTimestamp != nil {
		reason = "terminating"
	}
	if p.Status.Reason != "" {
		reason += " (" + p.Status.Reason + ")"
	}
	return nil, fmt.Errorf("nftproxy pod %s/%s on node %s is not running: %s; see kubectl -n %s describe pod %s",
		namespace, p.Name, node, reason, namespace, p.Name)
}

func ownedBy(p *v1.Pod, uid types.UID) bool {
	for _, ref := range p.OwnerReferences {
		if ref.Kind == "DaemonSet" && ref.UID == uid {
			return true
		}
	}
	return false
}

func noPodError(ctx context.Context, client kubernetes.Interface, namespace, name, node string, others []string) error {
	if _, err := client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		return fmt.Errorf("node %q not found (kubectl get nodes lists them)", node)
	}
	msg := fmt.Sprintf("no pod of DaemonSet %s/%s on node %s", namespace, name, node)
	if len(others) == 0 {
		return fmt.Errorf("%s: the DaemonSet has no pods (kubectl -n %s describe daemonset %s)", msg, namespace, name)
	}
	slices.Sort(others)
	if len(others) > 5 {
		others = append(others[:5], "...")
	}
	return fmt.Errorf("%s (it has pods on %s); is the node tainted or excluded by a nodeSelector?", msg, strings.Join(others, ", "))
}
