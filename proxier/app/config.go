package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/klog/v2"
	kpconfig "k8s.io/kube-proxy/config/v1alpha1"
	"k8s.io/utils/ptr"
)

// A --config file is a KubeProxyConfiguration (kubeproxy.config.k8s.io/
// v1alpha1), so that an existing kube-proxy ConfigMap works unchanged. Each
// field nftproxy uses sets the matching flag unless that flag was given on
// the command line (flags override the file, as in kube-proxy). Every other
// field set to something other than kube-proxy's default is warned about by
// name and ignored.

// fileSetting is one field of the file applied to a flag.
type fileSetting struct {
	field, flag, value string
}

// loadConfigFile decodes path, strictly first; a file with unknown or
// duplicate fields is still used (as kube-proxy does), with a warning.
func loadConfigFile(path string) (*kpconfig.KubeProxyConfiguration, []string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("reading --config: %w", err)
	}
	scheme := runtime.NewScheme()
	if err := kpconfig.AddToScheme(scheme); err != nil {
		return nil, nil, fmt.Errorf("registering KubeProxyConfiguration: %w", err)
	}
	var warnings []string
	cfg := &kpconfig.KubeProxyConfiguration{}
	strict := serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
	if _, _, err := strict.Decode(data, nil, cfg); err != nil {
		if !runtime.IsStrictDecodingError(err) {
			return nil, nil, fmt.Errorf("decoding --config %s: %w", path, err)
		}
		warnings = append(warnings, fmt.Sprintf("%s: %v (using the file anyway)", path, err))
		cfg = &kpconfig.KubeProxyConfiguration{}
		lenient := serializer.NewCodecFactory(scheme).UniversalDeserializer()
		if _, _, err := lenient.Decode(data, nil, cfg); err != nil {
			return nil, nil, fmt.Errorf("decoding --config %s: %w", path, err)
		}
	}
	return cfg, warnings, nil
}

// configSettings returns the flags a configuration sets and warnings for
// what nftproxy does not support.
func configSettings(c *kpconfig.KubeProxyConfiguration) ([]fileSetting, []string) {
	var warnings []string
	switch c.Mode {
	case "", "nftables":
	default:
		warnings = append(warnings, fmt.Sprintf("mode %q is not supported: nftproxy always programs nftables", c.Mode))
	}
	var out []fileSetting
	add := func(field, flag, value string) {
		if value != "" {
			out = append(out, fileSetting{field, flag, value})
		}
	}
	add("clientConnection.kubeconfig", "kubeconfig", c.ClientConnection.Kubeconfig)
	add("hostnameOverride", "hostname-override", c.HostnameOverride)
	add("clusterCIDR", "cluster-cidr", c.ClusterCIDR)
	add("healthzBindAddress", "healthz-bind-address", c.HealthzBindAddress)
	add("metricsBindAddress", "metrics-bind-address", c.MetricsBindAddress)
	if c.EnableProfiling {
		add("enableProfiling", "profiling", "true")
	}
	if c.BindAddressHardFail {
		add("bindAddressHardFail", "bind-address-hard-fail", "true")
	}
	if len(c.NodePortAddresses) > 0 {
		add("nodePortAddresses", "nodeport-addresses", strings.Join(c.NodePortAddresses, ","))
	}
	if c.Logging.Verbosity != 0 {
		add("logging.verbosity", "v", strconv.FormatUint(uint64(c.Logging.Verbosity), 10))
	}
	// The nftables section; with mode "" also the iptables one (kube-proxy's
	// default mode), for files written for it.
	nft, ipt := c.NFTables, c.IPTables
	section, period, minPeriod, masqAll := "nftables", nft.SyncPeriod.Duration, nft.MinSyncPeriod.Duration, nft.MasqueradeAll
	if c.Mode == "" {
		if period == 0 && ipt.SyncPeriod.Duration != 0 {
			section, period = "iptables", ipt.SyncPeriod.Duration
		}
		if minPeriod == 0 && ipt.MinSyncPeriod.Duration != 0 {
			minPeriod = ipt.MinSyncPeriod.Duration
		}
		masqAll = masqAll || ipt.MasqueradeAll
	}
	if period != 0 {
		add(section+".syncPeriod", "sync-period", period.String())
	}
	if minPeriod != 0 {
		add(section+".minSyncPeriod", "min-sync-period", minPeriod.String())
	}
	if masqAll {
		add(section+".masqueradeAll", "masquerade-all", "true")
	}
	ct := c.Conntrack
	if ct.MaxPerCore != nil {
		add("conntrack.maxPerCore", "conntrack-max-per-core", strconv.Itoa(int(*ct.MaxPerCore)))
	}
	if ct.Min != nil {
		add("conntrack.min", "conntrack-min", strconv.Itoa(int(*ct.Min)))
	}
	if ct.TCPEstablishedTimeout != nil {
		add("conntrack.tcpEstablishedTimeout", "conntrack-tcp-timeout-established", ct.TCPEstablishedTimeout.Duration.String())
	}
	if ct.TCPCloseWaitTimeout != nil {
		add("conntrack.tcpCloseWaitTimeout", "conntrack-tcp-timeout-close-wait", ct.TCPCloseWaitTimeout.Duration.String())
	}
	if ct.TCPBeLiberal {
		add("conntrack.tcpBeLiberal", "conntrack-tcp-be-liberal", "true")
	}
	if ct.UDPTimeout.Duration != 0 {
		add("conntrack.udpTimeout", "conntrack-udp-timeout", ct.UDPTimeout.Duration.String())
	}
	if ct.UDPStreamTimeout.Duration != 0 {
		add("conntrack.udpStreamTimeout", "conntrack-udp-timeout-stream", ct.UDPStreamTimeout.Duration.String())
	}
	switch c.DetectLocalMode {
	case "", "ClusterCIDR":
	default:
		warnings = append(warnings, fmt.Sprintf("detectLocalMode %q is not supported: local traffic is detected by clusterCIDR", c.DetectLocalMode))
	}
	return out, append(warnings, unsupportedFields(c)...)
}

// honoured are the fields configSettings applies or checks (prefixes).
var honoured = []string{
	"apiVersion", "kind", "mode", "clientConnection.kubeconfig", "hostnameOverride", "clusterCIDR",
	"healthzBindAddress", "metricsBindAddress", "bindAddressHardFail", "enableProfiling", "nodePortAddresses",
	"logging.verbosity", "detectLocalMode", "nftables.syncPeriod", "nftables.minSyncPeriod",
	"nftables.masqueradeAll", "iptables.syncPeriod", "iptables.minSyncPeriod", "iptables.masqueradeAll", "conntrack",
}

// upstreamDefaults are kube-proxy's defaults for the fields nftproxy does
// not use: such a field is only worth a warning when set to something else.
func upstreamDefaults() *kpconfig.KubeProxyConfiguration {
	d := &kpconfig.KubeProxyConfiguration{
		BindAddress:      "0.0.0.0",
		ConfigSyncPeriod: metav1.Duration{Duration: 15 * time.Minute},
		OOMScoreAdj:      ptr.To[int32](-999),
		DetectLocalMode:  "ClusterCIDR",
	}
	d.ClientConnection.ContentType = "application/vnd.kubernetes.protobuf"
	d.ClientConnection.QPS, d.ClientConnection.Burst = 5, 10
	d.IPTables.MasqueradeBit, d.IPTables.LocalhostNodePorts = ptr.To[int32](14), ptr.To(true)
	d.NFTables.MasqueradeBit = ptr.To[int32](14)
	d.IPVS.SyncPeriod = metav1.Duration{Duration: 30 * time.Second}
	d.Logging.Format = "text"
	d.Logging.FlushFrequency.Duration.Duration = 5 * time.Second
	d.Logging.FlushFrequency.SerializeAsString = true
	return d
}

// unsupportedFields names every field of c that nftproxy ignores and that
// is set to neither its zero value nor kube-proxy's default.
func unsupportedFields(c *kpconfig.KubeProxyConfiguration) []string {
	got, err1 := flatten(c)
	def, err2 := flatten(upstreamDefaults())
	if err := errors.Join(err1, err2); err != nil {
		return []string{fmt.Sprintf("cannot check the configuration for unsupported fields: %v", err)}
	}
	var out []string
	for _, k := range slices.Sorted(maps.Keys(got)) {
		v := got[k]
		if isZero(v) || reflect.DeepEqual(v, def[k]) || slices.ContainsFunc(honoured, func(h string) bool {
			return k == h || strings.HasPrefix(k, h+".")
		}) {
			continue
		}
		out = append(out, fmt.Sprintf("%s=%v is not supported by nftproxy and is ignored", k, v))
	}
	return out
}

// flatten turns an object into dotted-path leaves of its JSON form.
func flatten(obj any) (map[string]any, error) {
	data, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encoding configuration: %w", err)
	}
	var tree map[string]any
	if err := json.Unmarshal(data, &tree); err != nil {
		return nil, fmt.Errorf("decoding configuration: %w", err)
	}
	out := map[string]any{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if m, ok := v.(map[string]any); ok && len(m) > 0 {
			for k, sub := range m {
				walk(strings.TrimPrefix(prefix+"."+k, "."), sub)
			}
			return
		}
		out[prefix] = v
	}
	walk("", tree)
	return out, nil
}

func isZero(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return x == "" || x == "0s"
	case float64:
		return x == 0
	case bool:
		return !x
	case []any:
		return len(x) == 0
	case map[string]any:
		return len(x) == 0
	}
	return false
}

// applyConfigFile loads path and sets every flag it configures that was
// not given on the command line. It returns the warnings (also logged).
func applyConfigFile(fs *pflag.FlagSet, path string) ([]string, error) {
	cfg, warnings, err := loadConfigFile(path)
	if err != nil {
		return nil, err
	}
	settings, more := configSettings(cfg)
	warnings = append(warnings, more...)
	for _, s := range settings {
		f := fs.Lookup(s.flag)
		switch {
		case f == nil:
			warnings = append(warnings, fmt.Sprintf("%s=%s is not supported by this nftproxy (no --%s flag) and is ignored", s.field, s.value, s.flag))
		case f.Changed:
			klog.V(2).InfoS("Flag overrides the config file", "flag", s.flag, "field", s.field, "fileValue", s.value, "flagValue", f.Value.String())
		default:
			if err := fs.Set(s.flag, s.value); err != nil {
				return warnings, fmt.Errorf("--config %s: field %s: %w", path, s.field, err)
			}
		}
	}
	for _, w := range warnings {
		klog.Warningf("--config %s: %s", path, w)
	}
	return warnings, nil
}
