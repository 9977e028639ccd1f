package app

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nftproxy/nftproxy/proxier/conntrack"
)

// resolved parses args as nftproxy would (config file, then complete) and
// returns the resulting options.
func resolved(t *testing.T, args ...string) (options, serveOptions) {
	t.Helper()
	o, srv := newOptions(), newServeOptions()
	cmd := newCommandWith(o, srv)
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatalf("%q: %v", args, err)
	}
	if err := o.applyConfig(cmd.Flags()); err != nil {
		t.Fatalf("%q: config: %v", args, err)
	}
	if err := srv.check(); err != nil {
		t.Fatalf("%q: check: %v", args, err)
	}
	if err := o.complete(); err != nil {
		t.Fatalf("%q: complete: %v", args, err)
	}
	o.configFile = "" // the only expected difference
	return *o, *srv
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.conf")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// upstreamDefaultConfigFile is kube-proxy's default configuration with mode
// nftables (also used by the lab e2e test).
const upstreamDefaultConfigFile = "../../docs/kube-proxy-default-config.yaml"

func TestUpstreamDefaultConfigEqualsFlags(t *testing.T) {
	path := upstreamDefaultConfigFile
	cfg, warnings, err := loadConfigFile(path)
	if err != nil || len(warnings) != 0 {
		t.Fatalf("load: %v %q", err, warnings)
	}
	if _, w := configSettings(cfg); len(w) != 0 {
		t.Errorf("upstream defaults warned about: %q", w)
	}
	fromFile, srvFile := resolved(t, "--config", path, "--hostname-override", "node-a")
	fromFlags, srvFlags := resolved(t, "--hostname-override", "node-a", "--sync-period", "30s", "--min-sync-period", "1s",
		"--healthz-bind-address", "0.0.0.0:10256", "--metrics-bind-address", "127.0.0.1:10249", "--masquerade-all=false")
	if !reflect.DeepEqual(fromFile, fromFlags) || srvFile != srvFlags {
		t.Errorf("config file gives %+v %+v\nflags give       %+v %+v", fromFile, srvFile, fromFlags, srvFlags)
	}
	// Upstream's defaults are nftproxy's, except that the file states
	// minSyncPeriod (1s), which is honoured as given, while nftproxy
	// without one paces syncs by their cost.
	defaults, srvDefaults := resolved(t, "--hostname-override", "node-a")
	if defaults.minSyncPeriod.set || !fromFile.minSyncPeriod.set {
		t.Errorf("min sync period: set by default %v, by upstream's file %v; want false, true", defaults.minSyncPeriod.set, fromFile.minSyncPeriod.set)
	}
	defaults.minSyncPeriod = fromFile.minSyncPeriod
	if !reflect.DeepEqual(fromFile, defaults) || srvFile != srvDefaults {
		t.Errorf("upstream's defaults differ from nftproxy's: %+v %+v vs %+v %+v", fromFile, srvFile, defaults, srvDefaults)
	}
}

func TestConfigFieldsHonoured(t *testing.T) {
	path := writeConfig(t, `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clientConnection:
  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf
hostnameOverride: Node-B
clusterCIDR: 10.244.0.0/16,fd00:10:244::/56
healthzBindAddress: 0.0.0.0:20256
metricsBindAddress: 0.0.0.0:20249
bindAddressHardFail: true
enableProfiling: true
nodePortAddresses: ["primary", "192.168.0.0/16"]
nftables:
  masqueradeAll: true
  syncPeriod: 1m
  minSyncPeriod: 2s
`)
	fromFile, srvFile := resolved(t, "--config", path)
	fromFlags, srvFlags := resolved(t, "--kubeconfig", "/var/lib/kube-proxy/kubeconfig.conf", "--hostname-override", "Node-B",
		"--cluster-cidr", "10.244.0.0/16,fd00:10:244::/56", "--healthz-bind-address", "0.0.0.0:20256",
		"--metrics-bind-address", "0.0.0.0:20249", "--bind-address-hard-fail", "--profiling", "--masquerade-all",
		"--nodeport-addresses", "primary,192.168.0.0/16",
		"--sync-period", "1m", "--min-sync-period", "2s")
	if !reflect.DeepEqual(fromFile, fromFlags) || srvFile != srvFlags {
		t.Errorf("config file gives %+v %+v\nflags give       %+v %+v", fromFile, srvFile, fromFlags, srvFlags)
	}
	if fromFile.nodeName != "node-b" || len(fromFile.podRanges) != 2 || !fromFile.masqueradeAll || !srvFile.profiling {
		t.Errorf("file not applied: %+v", fromFile)
	}

	// Flags given on the command line override the file.
	o, srv := resolved(t, "--config", path, "--sync-period", "45s", "--masquerade-all=false", "--healthz-bind-address", "")
	if o.syncPeriod.String() != "45s" || o.masqueradeAll || srv.healthzBindAddress != "" || o.minSyncPeriod.String() != "2s" {
		t.Errorf("flags did not override the file: %+v %+v", o, srv)
	}
}

func TestConfigWarnings(t *testing.T) {
	path := writeConfig(t, `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: ipvs
bogusField: 1
detectLocalMode: InterfaceNamePrefix
conntrack:
  maxPerCore: 65536
ipvs:
  scheduler: rr
featureGates:
  SomeGate: true
iptables:
  syncPeriod: 30s
`)
	fs := NewCommand().Flags()
	warnings, err := applyConfigFile(fs, path)
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(warnings, "\n")
	for _, want := range []string{`unknown field "bogusField"`, `mode "ipvs" is not supported`, `detectLocalMode "InterfaceNamePrefix"`,
		"ipvs.scheduler=rr", "featureGates.SomeGate=true"} {
		if !strings.Contains(all, want) {
			t.Errorf("no warning about %s in:\n%s", want, all)
		}
	}
	if strings.Contains(all, "iptables.syncPeriod") || strings.Contains(all, "conntrack") {
		t.Errorf("a default value was warned about:\n%s", all)
	}
	if len(warnings) != 5 {
		t.Errorf("%d warnings, want 5:\n%s", len(warnings), all)
	}
}

func TestConfigConntrackSectionSetsTheConntrackFlags(t *testing.T) {
	path := writeConfig(t, `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
conntrack:
  maxPerCore: 0
  min: 1000
  tcpCloseWaitTimeout: 2h
  tcpBeLiberal: true
  udpTimeout: 45s
  udpStreamTimeout: 3m
`)
	o, _ := resolved(t, "--config", path, "--hostname-override", "n", "--conntrack-min", "2000")
	want := conntrack.Sysctls{MaxPerCore: 0, Min: 2000, TCPEstablishedTimeout: 24 * time.Hour,
		TCPCloseWaitTimeout: 2 * time.Hour, TCPBeLiberal: true, UDPTimeout: 45 * time.Second, UDPStreamTimeout: 3 * time.Minute}
	if o.conntrack != want {
		t.Errorf("conntrack settings %+v, want %+v (the file's, the flag over it, kube-proxy's default for the rest)", o.conntrack, want)
	}
	if d := newOptions().conntrack; d != conntrack.KubeProxyDefaults() {
		t.Errorf("defaults %+v, want kube-proxy's", d)
	}
}

func TestConfigModeEmptyUsesIPTablesSection(t *testing.T) {
	path := writeConfig(t, `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
iptables:
  masqueradeAll: true
  syncPeriod: 40s
  minSyncPeriod: 3s
`)
	o, _ := resolved(t, "--config", path, "--hostname-override", "n")
	if !o.masqueradeAll || o.syncPeriod.String() != "40s" || o.minSyncPeriod.String() != "3s" {
		t.Errorf("mode \"\" did not take the iptables section: %+v", o)
	}
}

func TestConfigErrors(t *testing.T) {
	if _, err := applyConfigFile(NewCommand().Flags(), filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("missing file accepted")
	}
	bad := writeConfig(t, "apiVersion: v1\nkind: ConfigMap\n")
	if _, err := applyConfigFile(NewCommand().Flags(), bad); err == nil {
		t.Error("a ConfigMap accepted as KubeProxyConfiguration")
	}
	bad = writeConfig(t, "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nnftables:\n  syncPeriod: 30s\n  minSyncPeriod: 1m\n")
	o, srv := newOptions(), newServeOptions()
	cmd := newCommandWith(o, srv)
	if err := cmd.ParseFlags([]string{"--config", bad, "--hostname-override", "n"}); err != nil {
		t.Fatal(err)
	}
	if err := o.applyConfig(cmd.Flags()); err != nil {
		t.Fatal(err)
	}
	if err := o.complete(); err == nil || !strings.Contains(err.Error(), "--min-sync-period") {
		t.Errorf("invalid periods from the file: %v", err)
	}
}
