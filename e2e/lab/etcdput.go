package lab

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/nftproxy/nftproxy/e2e/netkit"
)

// EtcdWriter puts objects straight into the lab's etcd, as the apiserver
// stores them (JSON is one of the encodings its storage decodes), through
// etcd's JSON gateway (/v3/kv/put) from inside the control-plane
// namespace, where etcd listens on loopback. Loading many Services this
// way skips the apiserver's ClusterIP allocation, which lists every
// IPAddress twice per Service in v1.37 (tens of thousands of Services
// would take hours); the apiserver's watch cache still serves whatever is
// written to clients as usual. Write the IPAddress objects too, so that
// the allocator's repair loop finds nothing to fix.
type EtcdWriter struct {
	http *http.Client
}

// NewEtcdWriter writes to the etcd of the lab whose control-plane
// namespace is cp (Lab.NS("cp")).
func NewEtcdWriter(cp *netkit.NS) *EtcdWriter {
	tr := &http.Transport{DialContext: nsDialer(cp), MaxIdleConnsPerHost: 64}
	return &EtcdWriter{http: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// Put stores obj (with its TypeMeta set) as JSON under key, e.g.
// /registry/services/specs/<namespace>/<name>.
func (w *EtcdWriter) Put(ctx context.Context, key string, obj any) error {
	val, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	body, _ := json.Marshal(map[string]string{
		"key":   base64.StdEncoding.EncodeToString([]byte(key)),
		"value": base64.StdEncoding.EncodeToString(val),
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://127.0.0.1:2379/v3/kv/put", bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := w.http.Do(req)
	if err != nil {
		return fmt.Errorf("etcd put %s: %w", key, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("etcd put %s: %s: %s", key, resp.Status, b)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return nil
}
