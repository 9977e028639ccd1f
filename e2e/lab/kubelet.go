package lab

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/nftproxy/nftproxy/e2e/netkit"
	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
)

// Ports the test server listens on in every pod.
const (
	PodPort     = 8080 // TCP and UDP
	PodHTTPPort = 8081
)

// createNodeObjects registers every node as kubelet would: labels with
// hostname and zone, pod CIDRs, both InternalIPs, and Ready.
func (l *Lab) createNodeObjects(ctx context.Context) error {
	for _, n := range l.nodes {
		if err := l.registerNode(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

// registerNode creates n's Node object, as kubelet does at start.
func (l *Lab) registerNode(ctx context.Context, n *Node) error {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: map[string]string{
			"kubernetes.io/hostname":      n.Name,
			"kubernetes.io/os":            "linux",
			"topology.kubernetes.io/zone": n.Zone,
		}},
		Spec: corev1.NodeSpec{PodCIDR: n.PodCIDRv4.String(), PodCIDRs: []string{n.PodCIDRv4.String(), n.PodCIDRv6.String()}},
	}
	created, err := l.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("lab: create Node %s: %w", n.Name, err)
	}
	created.Status = corev1.NodeStatus{
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: n.IPv4.String()},
			{Type: corev1.NodeInternalIP, Address: n.IPv6.String()},
			{Type: corev1.NodeHostName, Address: n.Name},
		},
		Conditions: []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			Message: "lab node", LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now(),
		}},
	}
	if _, err := l.client.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("lab: Node %s status: %w", n.Name, err)
	}
	return nil
}

// Pod is a test pod: a namespace on its node's bridge running testserver.
type Pod struct {
	Name, Namespace string
	Node            *Node
	NS              *netkit.NS
	IPv4, IPv6      netip.Addr
	hostIf          string
	offset          int
	server          *daemon
}

// IP returns the pod's address of the family of like (v4 if like is invalid).
func (p *Pod) IP(v6 bool) netip.Addr {
	if v6 {
		return p.IPv6
	}
	return p.IPv4
}

// RunPod creates pod name (in Kubernetes namespace "default") on node with
// the given labels, starts its test server, waits until the server
// answers on the pod IP, and then reports it Running and Ready, as kubelet
// would after a readiness probe.
func (l *Lab) RunPod(ctx context.Context, name, node string, labels map[string]string) (*Pod, error) {
	n := l.Node(node)
	if n == nil {
		return nil, fmt.Errorf("lab: RunPod %s: no node %q", name, node)
	}
	l.mu.Lock()
	if _, dup := l.pods[name]; dup {
		l.mu.Unlock()
		return nil, fmt.Errorf("lab: pod %s exists", name)
	}
	off, err := n.allocPod()
	ifn := fmt.Sprintf("vp%d", n.nextVethN)
	n.nextVethN++
	l.mu.Unlock()
	if err != nil {
		return nil, err
	}
	p := &Pod{Name: name, Namespace: "default", Node: n, hostIf: ifn, offset: off,
		IPv4: nth(n.PodCIDRv4, off), IPv6: nth(n.PodCIDRv6, off)}
	if err := l.plugPod(p); err != nil {
		l.unplugPod(p)
		return nil, err
	}
	l.mu.Lock()
	l.pods[name] = p
	l.mu.Unlock()
	if err := l.createPodObject(ctx, p, labels); err != nil {
		return p, err
	}
	return p, nil
}

// plugPod builds the pod's network namespace (veth into the node's
// bridge, hairpin on, addresses, default routes via the bridge) and starts
// its server.
func (l *Lab) plugPod(p *Pod) error {
	ns, err := l.newNS("pod-" + p.Name)
	if err != nil {
		return err
	}
	p.NS = ns
	n := p.Node
	if err := netkit.Veth(n.NS, p.hostIf, ns, "eth0"); err != nil {
		return fmt.Errorf("lab: pod %s link: %w", p.Name, err)
	}
	if err := n.NS.SetMaster(p.hostIf, podBridge); err != nil {
		return fmt.Errorf("lab: pod %s bridge port: %w", p.Name, err)
	}
	// Hairpin lets a pod reach itself through a Service, as CNI sets it.
	if err := n.NS.SetHairpin(p.hostIf, true); err != nil {
		return fmt.Errorf("lab: pod %s hairpin: %w", p.Name, err)
	}
	for _, a := range []netip.Prefix{prefixOn(p.IPv4, n.PodCIDRv4), prefixOn(p.IPv6, n.PodCIDRv6)} {
		if err := ns.AddAddr("eth0", a); err != nil {
			return fmt.Errorf("lab: pod %s address: %w", p.Name, err)
		}
	}
	for _, gw := range []netip.Addr{n.PodGWv4, n.PodGWv6} {
		if err := ns.AddDefaultRoute(gw); err != nil {
			return fmt.Errorf("lab: pod %s default route: %w", p.Name, err)
		}
	}
	p.server, err = l.startDaemon(ns, "pod-"+p.Name, l.bins.TestServer, "-name", p.Name, "-echo-source",
		fmt.Sprintf("-port=%d", PodPort), fmt.Sprintf("-http-port=%d", PodHTTPPort))
	if err != nil {
		return err
	}
	// Readiness probe: the server answers on the pod IP from its node.
	return waitUntil(context.Background(), 10*time.Second, "test server of pod "+p.Name, func(context.Context) (bool, error) {
		got, err := n.NS.DialTCP(netip.AddrPortFrom(p.IPv4, PodPort), time.Second)
		return err == nil && len(got) > 0, err
	}, p.server)
}

// unplugPod stops the pod's server and removes its namespace. The host
// side veth is deleted first, synchronously: namespace teardown is
// asynchronous in the kernel.
func (l *Lab) unplugPod(p *Pod) {
	if p.server != nil {
		_ = l.stopDaemon(p.server, 2*time.Second)
	}
	_ = withNetlink(p.Node.NS, func(h *netlink.Handle) error {
		if link, err := h.LinkByName(p.hostIf); err == nil {
			return h.LinkDel(link)
		}
		return nil
	})
	if p.NS != nil {
		_ = p.NS.Delete()
		l.mu.Lock()
		for i, ns := range l.namespaces {
			if ns == p.NS {
				l.namespaces = append(l.namespaces[:i], l.namespaces[i+1:]...)
				break
			}
		}
		l.mu.Unlock()
	}
	l.mu.Lock()
	delete(p.Node.usedPods, p.offset)
	l.mu.Unlock()
}

// allocPod picks the next free pod address offset on n. Offsets advance
// instead of reusing the lowest free one, so a new pod does not inherit a
// stale neighbour entry of a just-deleted pod. Caller holds l.mu.
func (n *Node) allocPod() (int, error) {
	const first, last = podHostBase, 250
	for range last - first + 1 {
		off := n.nextPod
		n.nextPod++
		if n.nextPod > last {
			n.nextPod = first
		}
		if !n.usedPods[off] {
			n.usedPods[off] = true
			return off, nil
		}
	}
	return 0, fmt.Errorf("lab: node %s has no free pod address", n.Name)
}

func (l *Lab) createPodObject(ctx context.Context, p *Pod, labels map[string]string) error {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, Labels: labels},
		Spec: corev1.PodSpec{
			NodeName: p.Node.Name,
			Containers: []corev1.Container{{
				Name: "server", Image: "nftproxy.local/testserver:lab", ImagePullPolicy: corev1.PullNever,
				Ports: []corev1.ContainerPort{
					{Name: "tcp", ContainerPort: PodPort, Protocol: corev1.ProtocolTCP},
					{Name: "udp", ContainerPort: PodPort, Protocol: corev1.ProtocolUDP},
					{Name: "http", ContainerPort: PodHTTPPort, Protocol: corev1.ProtocolTCP},
				},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
					TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(PodPort)}}},
			}},
		},
	}
	created, err := l.client.CoreV1().Pods(p.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("lab: create Pod %s: %w", p.Name, err)
	}
	now := metav1.Now()
	created.Status = corev1.PodStatus{
		Phase:     corev1.PodRunning,
		HostIP:    p.Node.IPv4.String(),
		HostIPs:   []corev1.HostIP{{IP: p.Node.IPv4.String()}, {IP: p.Node.IPv6.String()}},
		PodIP:     p.IPv4.String(),
		PodIPs:    []corev1.PodIP{{IP: p.IPv4.String()}, {IP: p.IPv6.String()}},
		StartTime: &now,
		ContainerStatuses: []corev1.ContainerStatus{{
			Name: "server", Image: "nftproxy.local/testserver:lab", Ready: true, Started: ptr.To(true),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		}},
	}
	setReadyConditions(&created.Status, true)
	created.Status.Conditions = append(created.Status.Conditions,
		corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
		corev1.PodCondition{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now})
	if _, err := l.client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("lab: Pod %s status: %w", p.Name, err)
	}
	return nil
}

// setReadyConditions sets (or adds) the Ready and ContainersReady
// conditions, which is what the EndpointSlice controller reads.
func setReadyConditions(st *corev1.PodStatus, ready bool) {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	for _, t := range []corev1.PodConditionType{corev1.PodReady, corev1.ContainersReady} {
		found := false
		for i := range st.Conditions {
			if st.Conditions[i].Type == t {
				if st.Conditions[i].Status != status {
					st.Conditions[i].Status = status
					st.Conditions[i].LastTransitionTime = metav1.Now()
				}
				found = true
			}
		}
		if !found {
			st.Conditions = append(st.Conditions, corev1.PodCondition{Type: t, Status: status, LastTransitionTime: metav1.Now()})
		}
	}
	for i := range st.ContainerStatuses {
		st.ContainerStatuses[i].Ready = ready
	}
}

// SetReady flips a pod's readiness in the API (its server keeps running),
// as a failing or recovering readiness probe would.
func (l *Lab) SetReady(ctx context.Context, pod string, ready bool) error {
	p, err := l.pod(pod)
	if err != nil {
		return err
	}
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := l.client.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		setReadyConditions(&cur.Status, ready)
		_, err = l.client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("lab: set pod %s ready=%v: %w", pod, ready, err)
	}
	return nil
}

// DeletePod deletes a pod with a grace period. Without a kubelet to
// finish the deletion, the pod stays terminating (its endpoints become
// ready=false, serving=true, terminating=true) and its server keeps
// answering, until ForceDeletePod.
func (l *Lab) DeletePod(ctx context.Context, pod string, grace time.Duration) error {
	p, err := l.pod(pod)
	if err != nil {
		return err
	}
	secs := int64(grace / time.Second)
	if secs < 1 {
		secs = 1 // 0 would be a force delete
	}
	if err := l.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &secs}); err != nil {
		return fmt.Errorf("lab: delete pod %s: %w", pod, err)
	}
	return nil
}

// ForceDeletePod removes the pod object at once and tears the pod down
// (server stopped, namespace deleted).
func (l *Lab) ForceDeletePod(ctx context.Context, pod string) error {
	p, err := l.pod(pod)
	if err != nil {
		return err
	}
	zero := int64(0)
	err = l.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("lab: force delete pod %s: %w", pod, err)
	}
	l.mu.Lock()
	delete(l.pods, pod)
	// Like a ReplicaSet, the deployment forgets the pod; Scale replaces it.
	for _, d := range l.deployments {
		for i, name := range d.pods {
			if name == pod {
				d.pods = append(d.pods[:i], d.pods[i+1:]...)
				break
			}
		}
	}
	l.mu.Unlock()
	l.unplugPod(p)
	return nil
}

// Pod returns a running pod by name, or nil.
func (l *Lab) Pod(name string) *Pod {
	p, _ := l.pod(name)
	return p
}

func (l *Lab) pod(name string) (*Pod, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p, ok := l.pods[name]
	if !ok {
		return nil, fmt.Errorf("lab: no pod %q", name)
	}
	return p, nil
}
