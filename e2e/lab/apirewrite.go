package lab

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"

	"k8s.io/client-go/tools/clientcmd"
)

// APIRewriter stands between one node's nftproxy and kube-apiserver and
// changes the objects nftproxy is served: the way to feed it input the
// apiserver's validation refuses to store (objects written by older
// apiservers, restored from backups, or by a buggy aggregated server),
// while everything else still comes from the real apiserver.
type APIRewriter struct {
	// Kubeconfig is nftproxy's kubeconfig (its ServiceAccount token)
	// pointing at the rewriter: start a node's proxy with
	// StartProxyWith(ctx, node, wait, "--kubeconfig="+Kubeconfig).
	Kubeconfig string

	ln      net.Listener
	srv     *http.Server
	tr      *http.Transport
	token   string // nftproxy's: client-go sends no credentials over plain HTTP
	rewrite func(obj map[string]any)
}

// StartAPIRewriter serves the API in plain HTTP on the control-plane
// address at port, with nftproxy's ServiceAccount token added to every
// request (client-go sends no credentials over plain HTTP). Each object of a GET's answer (one object, a list's
// items, a watch's events) is passed through rewrite, decoded from JSON,
// before nftproxy sees it; rewrite may change it in place. Other requests
// (Events nftproxy posts) pass unchanged.
func (l *Lab) StartAPIRewriter(port int, rewrite func(obj map[string]any)) (*APIRewriter, error) {
	addr := net.JoinHostPort(underlayAddr(cpHost).V4.String(), fmt.Sprint(port))
	var ln net.Listener
	err := l.cp.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lab: API rewriter listen on %s: %w", addr, err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(l.pki.caPEM)
	rw := &APIRewriter{
		ln:      ln,
		tr:      &http.Transport{DialContext: nsDialer(l.cp), TLSClientConfig: &tls.Config{RootCAs: pool}},
		rewrite: rewrite,
	}
	cfg, err := clientcmd.LoadFromFile(l.proxyKubeconfig)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("lab: API rewriter kubeconfig: %w", err)
	}
	for _, c := range cfg.Clusters {
		c.Server = "http://" + addr
		c.CertificateAuthorityData = nil
	}
	for _, a := range cfg.AuthInfos {
		rw.token = a.Token
	}
	rw.Kubeconfig = filepath.Join(l.work, fmt.Sprintf("nftproxy-rewriter-%d.kubeconfig", port))
	if err := clientcmd.WriteToFile(*cfg, rw.Kubeconfig); err != nil {
		ln.Close()
		return nil, fmt.Errorf("lab: API rewriter kubeconfig: %w", err)
	}
	rw.srv = &http.Server{Handler: rw}
	go func() { _ = rw.srv.Serve(ln) }()
	return rw, nil
}

// Close stops serving (nftproxy's watches through it end).
func (rw *APIRewriter) Close() error {
	err := rw.srv.Close()
	rw.tr.CloseIdleConnections()
	return err
}

func (rw *APIRewriter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	out := r.Clone(r.Context())
	out.URL.Scheme, out.URL.Host = "https", strings.TrimPrefix(apiServerURL(), "https://")
	out.Host, out.RequestURI = "", ""
	out.Header.Set("Authorization", "Bearer "+rw.token)
	rewriting := r.Method == http.MethodGet
	if rewriting {
		out.Header.Set("Accept", "application/json") // objects we can rewrite
	}
	resp, err := rw.tr.RoundTrip(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	rewriting = rewriting && resp.StatusCode == http.StatusOK &&
		strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json")
	for k, v := range resp.Header {
		if rewriting && strings.EqualFold(k, "Content-Length") {
			continue
		}
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	switch {
	case !rewriting:
		_, _ = io.Copy(flushWriter{w}, resp.Body)
	case r.URL.Query().Get("watch") == "true" || r.URL.Query().Get("watch") == "1":
		rw.stream(w, resp.Body)
	default:
		rw.whole(w, resp.Body)
	}
}

// stream rewrites a watch: one JSON event after another, each flushed.
func (rw *APIRewriter) stream(w http.ResponseWriter, body io.Reader) {
	dec := json.NewDecoder(body)
	dec.UseNumber()
	enc := json.NewEncoder(flushWriter{w})
	for {
		var ev map[string]any
		if err := dec.Decode(&ev); err != nil {
			return // the watch ended (or the client went away)
		}
		if obj, ok := ev["object"].(map[string]any); ok {
			rw.rewrite(obj)
		}
		if err := enc.Encode(ev); err != nil {
			return
		}
	}
}

// whole rewrites one object or a list.
func (rw *APIRewriter) whole(w http.ResponseWriter, body io.Reader) {
	b, err := io.ReadAll(body)
	if err != nil {
		return
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		_, _ = w.Write(b)
		return
	}
	if items, ok := obj["items"].([]any); ok {
		for _, it := range items {
			if m, ok := it.(map[string]any); ok {
				rw.rewrite(m)
			}
		}
	} else {
		rw.rewrite(obj)
	}
	_ = json.NewEncoder(w).Encode(obj)
}

// flushWriter flushes after every write, so watch events are not held.
type flushWriter struct{ w http.ResponseWriter }

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if fl, ok := f.w.(http.Flusher); ok {
		fl.Flush()
	}
	return n, err
}
