package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"

	"github.com/nftproxy/nftproxy/e2e/lab"
)

// fakeKubelet is the exec endpoint of a kubelet, and nothing else: an
// HTTPS server in a node's namespace that the apiserver proxies
// `pods/exec` to. It speaks the real remotecommand protocol (SPDY,
// v4.channel.k8s.io, the one the apiserver uses towards kubelets; a
// WebSocket client is translated by the apiserver) and runs the command in
// the node's network namespace: the pods it serves are hostNetwork pods,
// whose network is the node's.
type fakeKubelet struct {
	node string
	ns   string // network namespace name
	// images maps a container's command name to the argv that runs it
	// in the lab (binary path plus the pod's configuration).
	images map[string][]string
	srv    *http.Server
	port   int

	mu    sync.Mutex
	execs []string // requests served, for test failure messages
}

// startFakeKubelet listens on the node's InternalIP (v4), on a free port,
// inside the node's namespace.
func startFakeKubelet(t *testing.T, l *lab.Lab, node string, images map[string][]string) *fakeKubelet {
	t.Helper()
	n := l.Node(node)
	if n == nil {
		t.Fatalf("fake kubelet: no node %q", node)
	}
	cert, err := selfSignedCert(n.IPv4.AsSlice())
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	// A socket stays in the namespace it was created in; serving it from
	// any thread is fine.
	if err := n.NS.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", net.JoinHostPort(n.IPv4.String(), "0"))
		return err
	}); err != nil {
		t.Fatalf("fake kubelet on %s: listen: %v", node, err)
	}
	k := &fakeKubelet{node: node, ns: n.NS.Name, images: images, port: ln.Addr().(*net.TCPAddr).Port}
	mux := http.NewServeMux()
	mux.HandleFunc("/exec/{namespace}/{pod}/{container}", k.serveExec)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		t.Logf("fake kubelet %s: unexpected %s %s", node, r.Method, r.URL)
		http.NotFound(w, r)
	})
	k.srv = &http.Server{Handler: mux, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
		ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = k.srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = k.srv.Shutdown(ctx)
	})
	return k
}

// register advertises the kubelet port on the Node object, as kubelet
// does in its status. The lab's Nodes also carry a Hostname address that
// nothing resolves, and the apiserver prefers Hostname over InternalIP
// (--kubelet-preferred-address-types): the Node keeps its InternalIPs only.
func (k *fakeKubelet) register(ctx context.Context, l *lab.Lab) error {
	n := l.Node(k.node)
	patch := fmt.Sprintf(`{"status":{"daemonEndpoints":{"kubeletEndpoint":{"Port":%d}},`+
		`"addresses":[{"type":"InternalIP","address":%q},{"type":"InternalIP","address":%q}]}}`,
		k.port, n.IPv4.String(), n.IPv6.String())
	_, err := l.Client().CoreV1().Nodes().Patch(ctx, k.node, "application/merge-patch+json", []byte(patch),
		metav1.PatchOptions{}, "status")
	return err
}

func (k *fakeKubelet) served() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.execs...)
}

type streamAndReply struct {
	httpstream.Stream
	replySent <-chan struct{}
}

// serveExec is the server half of `kubectl exec` over SPDY, as kubelet's
// streaming server implements it (protocol v4: the error stream carries a
// metav1.Status with the exit code).
func (k *fakeKubelet) serveExec(w http.ResponseWriter, req *http.Request) {
	q := req.URL.Query()
	argv := q[corev1.ExecCommandParam]
	k.mu.Lock()
	k.execs = append(k.execs, fmt.Sprintf("%s/%s/%s %q", req.PathValue("namespace"), req.PathValue("pod"), req.PathValue("container"), argv))
	k.mu.Unlock()
	if q.Get(corev1.ExecTTYParam) == "1" || q.Get(corev1.ExecStdinParam) == "1" {
		http.Error(w, "fake kubelet: no stdin or tty", http.StatusBadRequest)
		return
	}
	if len(argv) == 0 {
		http.Error(w, "fake kubelet: no command", http.StatusBadRequest)
		return
	}
	image, ok := k.images[argv[0]]
	if !ok {
		http.Error(w, fmt.Sprintf("fake kubelet: %q: executable file not found in $PATH", argv[0]), http.StatusBadRequest)
		return
	}
	if _, err := httpstream.Handshake(req, w, []string{"v4.channel.k8s.io"}); err != nil {
		return // Handshake wrote the response
	}
	streams := make(chan streamAndReply, 4)
	conn := spdy.NewResponseUpgrader().UpgradeResponse(w, req, func(s httpstream.Stream, replySent <-chan struct{}) error {
		streams <- streamAndReply{s, replySent}
		return nil
	})
	if conn == nil {
		return // UpgradeResponse wrote the error
	}
	defer conn.Close()
	conn.SetIdleTimeout(time.Minute)

	want := map[string]bool{corev1.StreamTypeError: true}
	if q.Get(corev1.ExecStdoutParam) == "1" {
		want[corev1.StreamTypeStdout] = true
	}
	if q.Get(corev1.ExecStderrParam) == "1" {
		want[corev1.StreamTypeStderr] = true
	}
	got := map[string]streamAndReply{}
	timeout := time.After(30 * time.Second)
	for len(got) < len(want) {
		select {
		case s := <-streams:
			typ := s.Headers().Get(corev1.StreamType)
			if !want[typ] {
				_ = s.Reset()
				continue
			}
			got[typ] = s
		case <-timeout:
			return
		}
	}
	for _, s := range got {
		<-s.replySent
	}

	cmd := exec.CommandContext(req.Context(), "ip", append([]string{"netns", "exec", k.ns}, append(image, argv[1:]...)...)...)
	if s, ok := got[corev1.StreamTypeStdout]; ok {
		cmd.Stdout = s
	} else {
		cmd.Stdout = io.Discard
	}
	if s, ok := got[corev1.StreamTypeStderr]; ok {
		cmd.Stderr = s
	} else {
		cmd.Stderr = io.Discard
	}
	runErr := cmd.Run()
	status := metav1.Status{Status: metav1.StatusSuccess}
	var exit *exec.ExitError
	switch {
	case errors.As(runErr, &exit):
		status = metav1.Status{
			Status: metav1.StatusFailure, Reason: "NonZeroExitCode",
			Message: fmt.Sprintf("command terminated with non-zero exit code: %v", runErr),
			Details: &metav1.StatusDetails{Causes: []metav1.StatusCause{{
				Type: "ExitCode", Message: strconv.Itoa(exit.ExitCode()),
			}}},
		}
	case runErr != nil:
		status = metav1.Status{Status: metav1.StatusFailure, Message: runErr.Error()}
	}
	for typ, s := range got {
		if typ != corev1.StreamTypeError {
			_ = s.Close()
		}
	}
	b, _ := json.Marshal(status)
	errStream := got[corev1.StreamTypeError]
	_, _ = errStream.Write(b)
	_ = errStream.Close()
}

func selfSignedCert(ip net.IP) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "fake-kubelet"},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{ip},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
