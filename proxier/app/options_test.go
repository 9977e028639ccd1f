package app

import (
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/nftproxy/nftproxy/proxier"
)

func TestParseClusterCIDRs(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr string
	}{
		{in: ""},
		{in: "10.244.0.0/16", want: []string{"10.244.0.0/16"}},
		{in: "10.244.0.1/16, fd44::/16", want: []string{"10.244.0.0/16", "fd44::/16"}},
		{in: "10.0.0.0/8,10.1.0.0/16", wantErr: "one CIDR per IP family"},
		{in: "10.0.0.0/33", wantErr: "invalid CIDR"},
		{in: "10.0.0.0/8,", wantErr: "invalid CIDR"},
	}
	for _, tc := range tests {
		got, err := parseClusterCIDRs(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseClusterCIDRs(%q) error = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		var want []netip.Prefix
		for _, s := range tc.want {
			want = append(want, netip.MustParsePrefix(s))
		}
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("parseClusterCIDRs(%q) = %v, %v; want %v", tc.in, got, err, want)
		}
	}
}

func TestOptionsComplete(t *testing.T) {
	o := newOptions()
	o.hostnameOverride = " Node-A "
	if err := o.complete(); err != nil || o.nodeName != "node-a" {
		t.Errorf("complete() = %v, node %q; want nil, node-a", err, o.nodeName)
	}
	if n, err := nodeName(""); err != nil || n == "" || n != strings.ToLower(n) {
		t.Errorf("nodeName(\"\") = %q, %v; want the lowercased host name", n, err)
	}

	bad := newOptions()
	bad.hostnameOverride = "n"
	bad.minSyncPeriod, bad.syncPeriod = optionalDuration{time.Minute, true}, time.Second
	bad.clusterCIDRs = "nope"
	err := bad.complete()
	for _, want := range []string{"--cluster-cidr", "--min-sync-period"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("complete() = %v, want it to mention %s", err, want)
		}
	}
	neg := newOptions()
	neg.hostnameOverride, neg.minSyncPeriod, neg.syncPeriod = "n", optionalDuration{-time.Second, true}, 0
	if err := neg.complete(); err == nil || !strings.Contains(err.Error(), "negative") || !strings.Contains(err.Error(), "positive") {
		t.Errorf("complete() = %v, want both period errors", err)
	}
}

func TestCommandFlags(t *testing.T) {
	fs := NewCommand().Flags()
	for _, name := range []string{"kubeconfig", "master", "hostname-override", "cluster-cidr", "masquerade-all",
		"min-sync-period", "sync-period", "v", "vmodule", "deny-external-ips-on-node-addresses"} {
		if fs.Lookup(name) == nil {
			t.Errorf("flag --%s missing", name)
		}
	}
	if err := fs.Parse([]string{"-v=4", "--min-sync-period=0", "--cluster-cidr=10.0.0.0/8"}); err != nil {
		t.Fatal(err)
	}
}

func TestNodePortAddressesFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want proxier.NodePortAddresses
		bad  bool
	}{
		{args: nil, want: proxier.NodePortAddresses{Primary: true}},
		{args: []string{"--nodeport-addresses=10.0.0.0/8,::1/128"},
			want: proxier.NodePortAddresses{CIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}}},
		{args: []string{"--nodeport-addresses=primary,127.0.0.0/8"},
			want: proxier.NodePortAddresses{Primary: true, CIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}},
		{args: []string{"--nodeport-addresses=10.0.0.1"}, bad: true},
	} {
		o := newOptions()
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		o.addFlags(fs)
		if err := fs.Parse(append([]string{"--hostname-override=n"}, tc.args...)); err != nil {
			t.Fatal(err)
		}
		err := o.complete()
		if (err != nil) != tc.bad {
			t.Errorf("%v: err %v", tc.args, err)
			continue
		}
		if !tc.bad && !reflect.DeepEqual(o.nodePorts, tc.want) {
			t.Errorf("%v: got %+v, want %+v", tc.args, o.nodePorts, tc.want)
		}
	}
}

// TestMinSyncPeriodExplicitOrAdaptive: only a --min-sync-period given on
// the command line or in --config (even 0 or kube-proxy's 1s) selects the
// fixed period; without one the proxier paces syncs by their cost.
func TestMinSyncPeriodExplicitOrAdaptive(t *testing.T) {
	fileWith := writeConfig(t, "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nnftables:\n  minSyncPeriod: 1s\n")
	fileWithout := writeConfig(t, "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nnftables:\n  syncPeriod: 30s\n")
	for _, tc := range []struct {
		args []string
		want optionalDuration
	}{
		{nil, optionalDuration{}},
		{[]string{"--min-sync-period=1s"}, optionalDuration{time.Second, true}},
		{[]string{"--min-sync-period=0"}, optionalDuration{0, true}},
		{[]string{"--config", fileWith}, optionalDuration{time.Second, true}},
		{[]string{"--config", fileWithout}, optionalDuration{}},
		{[]string{"--config", fileWith, "--min-sync-period=250ms"}, optionalDuration{250 * time.Millisecond, true}},
	} {
		o, _ := resolved(t, append(tc.args, "--hostname-override", "n")...)
		if o.minSyncPeriod != tc.want {
			t.Errorf("%q: min sync period %+v, want %+v", tc.args, o.minSyncPeriod, tc.want)
		}
	}
}
