package main

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/spf13/pflag"

	"github.com/nftproxy/nftproxy/proxier"
)

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
