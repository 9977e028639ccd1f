package lab

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// kcmControllers are the only controllers the lab runs: enough for real
// EndpointSlices. Node lifecycle, pod GC and taint eviction would delete
// the kubelet-less pods and nodes, so they stay off.
var kcmControllers = []string{
	"endpointslice-controller", "endpointslice-mirroring-controller",
	"serviceaccount-controller", "namespace-controller", "garbage-collector-controller",
}

// startControlPlane creates the control-plane namespace and runs etcd,
// kube-apiserver and kube-controller-manager in it, each awaited on its
// own health signal.
func (l *Lab) startControlPlane(ctx context.Context) error {
	ns, err := l.newNS("cp")
	if err != nil {
		return err
	}
	l.cp = ns
	cpIP, err := l.attachUnderlay(ns, "cp", cpHost)
	if err != nil {
		return err
	}
	pkiDir := filepath.Join(l.work, "pki")
	if err := os.MkdirAll(pkiDir, 0o700); err != nil {
		return fmt.Errorf("lab: pki dir: %w", err)
	}
	kubeSvcIP := nth(ServiceCIDRV4, 1)
	l.pki, err = makePKI(pkiDir, []net.IP{cpIP.V4.AsSlice(), cpIP.V6.AsSlice(), kubeSvcIP.AsSlice(), net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	if err := l.startEtcd(ctx); err != nil {
		return err
	}
	if err := l.startAPIServer(ctx, cpIP); err != nil {
		return err
	}
	// The client is needed from here on: the controller manager's
	// readiness is checked through the API.
	if l.client, err = l.newClient(); err != nil {
		return err
	}
	return l.startControllerManager(ctx)
}

func (l *Lab) startEtcd(ctx context.Context) error {
	// etcd listens on the control-plane namespace's own loopback: only
	// the apiserver next to it talks to it.
	d, err := l.startDaemon(l.cp, "etcd", l.bins.Etcd,
		"--name=lab", "--data-dir="+filepath.Join(l.work, "etcd"),
		"--listen-client-urls=http://127.0.0.1:2379", "--advertise-client-urls=http://127.0.0.1:2379",
		"--listen-peer-urls=http://127.0.0.1:2380", "--initial-advertise-peer-urls=http://127.0.0.1:2380",
		"--initial-cluster=lab=http://127.0.0.1:2380",
		"--unsafe-no-fsync", // tests do not need durability; fsync dominates latency
		"--log-level=warn")
	if err != nil {
		return err
	}
	return l.waitEtcd(ctx, d)
}

// waitEtcd waits until etcd d reports itself healthy.
func (l *Lab) waitEtcd(ctx context.Context, d *daemon) error {
	return waitUntil(ctx, 30*time.Second, "etcd healthy", func(ctx context.Context) (bool, error) {
		code, body, err := httpGetIn(ctx, l.cp, "http://127.0.0.1:2379/health", nil, "")
		return err == nil && code == 200 && strings.Contains(body, `"true"`), err
	}, d)
}

func (l *Lab) startAPIServer(ctx context.Context, cpIP pair) error {
	l.adminToken = randomToken()
	l.kcmToken = randomToken()
	tokens := filepath.Join(l.work, "pki", "tokens.csv")
	// Static tokens: the harness and the controller manager are cluster
	// admins; nftproxy gets a ServiceAccount token instead (see proxy.go).
	content := fmt.Sprintf("%s,lab-admin,lab-admin,\"system:masters\"\n%s,system:kube-controller-manager,kcm,\"system:masters\"\n",
		l.adminToken, l.kcmToken)
	content += l.clusterTokens()
	if err := os.WriteFile(tokens, []byte(content), 0o600); err != nil {
		return fmt.Errorf("lab: token file: %w", err)
	}
	args := []string{l.bins.APIServer,
		"--etcd-servers=http://127.0.0.1:2379",
		"--bind-address=::", // both families of the control-plane namespace
		fmt.Sprintf("--secure-port=%d", APIServerPort),
		"--advertise-address=" + cpIP.V4.String(),
		"--tls-cert-file=" + l.pki.ServingCert, "--tls-private-key-file=" + l.pki.ServingKey,
		"--cert-dir=" + filepath.Join(l.work, "pki"),
		"--service-cluster-ip-range=" + ServiceCIDRV4.String() + "," + ServiceCIDRV6.String(),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + l.pki.SAPub,
		"--service-account-signing-key-file=" + l.pki.SAKey,
		"--token-auth-file=" + tokens,
		"--enable-priority-and-fairness=false",
		"--profiling=false"}
	if l.opts.RealKubelets {
		args = append(args, clusterAPIServerFlags...)
	} else {
		args = append(args, "--authorization-mode=RBAC",
			// Without kubelets nothing would keep the kubernetes Service's
			// endpoint (the advertise address) meaningful.
			"--endpoint-reconciler-type=none",
			// Test pods mount no tokens; skipping the ServiceAccount admission
			// plugin avoids a race with the default ServiceAccount of new
			// namespaces.
			"--disable-admission-plugins=ServiceAccount",
			// As kubeadm's: the DaemonSet's init container is privileged
			// (manifests/daemonset.yaml), and the server dry run checks it.
			"--allow-privileged=true")
	}
	d, err := l.startDaemon(l.cp, "kube-apiserver", args...)
	if err != nil {
		return err
	}
	l.apiserver = d
	return l.waitAPIServer(ctx, d)
}

// waitAPIServer waits until kube-apiserver d answers /readyz with 200.
func (l *Lab) waitAPIServer(ctx context.Context, d *daemon) error {
	return waitUntil(ctx, 60*time.Second, "kube-apiserver /readyz", func(ctx context.Context) (bool, error) {
		code, body, err := httpGetIn(ctx, l.cp, apiServerURL()+"/readyz", l.pki.caPEM, l.adminToken)
		if err == nil && code != 200 {
			err = fmt.Errorf("readyz %d: %.200s", code, body)
		}
		return err == nil, err
	}, d)
}

func (l *Lab) startControllerManager(ctx context.Context) error {
	kc := filepath.Join(l.work, "kube-controller-manager.kubeconfig")
	if err := writeKubeconfig(kc, l.pki.caPEM, l.kcmToken); err != nil {
		return err
	}
	args := []string{l.bins.ControllerManager,
		"--kubeconfig=" + kc,
		"--leader-elect=false",
		"--use-service-account-credentials=false",
		"--secure-port=0"} // no health endpoint needed: readiness is seen through the API
	if l.opts.RealKubelets {
		args = append(args, l.clusterKCMFlags()...)
	} else {
		args = append(args, "--controllers="+strings.Join(kcmControllers, ","))
	}
	d, err := l.startDaemon(l.cp, "kube-controller-manager", args...)
	if err != nil {
		return err
	}
	l.kcm = d
	// The serviceaccount controller creating default/default proves the
	// controller manager is connected and its informers have synced.
	return waitUntil(ctx, 60*time.Second, "kube-controller-manager (default ServiceAccount)", func(ctx context.Context) (bool, error) {
		_, err := l.client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err == nil, err
	}, d)
}

// writeKubeconfig writes a kubeconfig for the lab apiserver with a bearer
// token. Its server address is on the lab network: use it from inside a
// lab namespace (ip netns exec <prefix>cp kubectl --kubeconfig ...).
func writeKubeconfig(path string, caPEM []byte, token string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["lab"] = &clientcmdapi.Cluster{Server: apiServerURL(), CertificateAuthorityData: caPEM}
	cfg.AuthInfos["lab"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["lab"] = &clientcmdapi.Context{Cluster: "lab", AuthInfo: "lab"}
	cfg.CurrentContext = "lab"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("lab: write kubeconfig %s: %w", path, err)
	}
	return nil
}
