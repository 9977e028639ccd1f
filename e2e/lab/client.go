package lab

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/nftproxy/nftproxy/e2e/netkit"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// nsDialer returns a dial function whose sockets are created inside ns.
// The test process stays in the host namespace, which has no route to the
// lab; a socket keeps the namespace it was created in, so dialing from a
// thread inside ns is all client-go needs to reach the apiserver.
func nsDialer(ns *netkit.NS) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := ns.Do(func() error {
			var d net.Dialer
			var err error
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("lab: dial %s from %s: %w", addr, ns.Name, err)
		}
		return c, nil
	}
}

// apiServerURL is the apiserver's address on the lab network.
func apiServerURL() string {
	return fmt.Sprintf("https://%s", net.JoinHostPort(underlayAddr(cpHost).V4.String(), fmt.Sprint(APIServerPort)))
}

// adminConfig is a rest.Config for the harness: the static admin token
// (group system:masters), dialing through the control-plane namespace.
func (l *Lab) adminConfig() *rest.Config {
	return &rest.Config{
		Host:            apiServerURL(),
		BearerToken:     l.adminToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: l.pki.caPEM},
		Dial:            nsDialer(l.cp),
		QPS:             200,
		Burst:           400,
		Timeout:         30 * time.Second,
	}
}

func (l *Lab) newClient() (kubernetes.Interface, error) {
	c, err := kubernetes.NewForConfig(l.adminConfig())
	if err != nil {
		return nil, fmt.Errorf("lab: API client: %w", err)
	}
	return c, nil
}

// httpGetIn fetches url from inside ns (https verified against caPEM when
// given, with an optional bearer token) and returns status and body.
func httpGetIn(ctx context.Context, ns *netkit.NS, url string, caPEM []byte, token string) (int, string, error) {
	tr := &http.Transport{DialContext: nsDialer(ns), DisableKeepAlives: true}
	if caPEM != nil {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(caPEM)
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", fmt.Errorf("lab: request %s: %w", url, err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return resp.StatusCode, string(b), nil
}
