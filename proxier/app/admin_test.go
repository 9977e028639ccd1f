package app

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/nftrules/trace"
)

func TestTraceRequest(t *testing.T) {
	for _, tc := range []struct {
		trace, path string
		args        []string
		want        trace.Packet
		auto        bool
		err         string
	}{
		{trace: "10.244.1.5", args: []string{"10.96.0.10:80/tcp"}, auto: true,
			want: trace.Packet{Src: netip.MustParseAddr("10.244.1.5"), Dst: netip.MustParseAddr("10.96.0.10"), Proto: nft.TCP, DstPort: 80}},
		{trace: "10.244.1.5 10.96.0.10:53/UDP", path: "local",
			want: trace.Packet{Src: netip.MustParseAddr("10.244.1.5"), Dst: netip.MustParseAddr("10.96.0.10"), Proto: nft.UDP, DstPort: 53, Path: trace.LocalOut}},
		{trace: "fd44::5", args: []string{"[fd96::10]:3868/sctp"}, path: "forwarded",
			want: trace.Packet{Src: netip.MustParseAddr("fd44::5"), Dst: netip.MustParseAddr("fd96::10"), Proto: nft.SCTP, DstPort: 3868, Path: trace.Forwarded}},
		{trace: "10.0.0.1", args: []string{"10.96.0.10:80"}, path: "to-local", // tcp by default
			want: trace.Packet{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.96.0.10"), Proto: nft.TCP, DstPort: 80, Path: trace.ToLocal}},
		{trace: "10.0.0.1", err: "wants SRC DST:PORT/PROTO"},
		{trace: "10.0.0.1", args: []string{"a", "b"}, err: "wants SRC DST:PORT/PROTO"},
		{trace: "pod", args: []string{"10.96.0.10:80/tcp"}, err: "source"},
		{trace: "10.0.0.1", args: []string{"10.96.0.10/tcp"}, err: "destination"},
		{trace: "10.0.0.1", args: []string{"10.96.0.10:80/icmp"}, err: "unknown protocol"},
		{trace: "10.0.0.1", args: []string{"10.96.0.10:80/1"}, err: "tcp, udp or sctp"},
		{trace: "10.0.0.1", args: []string{"[fd96::10]:80/tcp"}, err: "different IP families"},
		{trace: "10.0.0.1", args: []string{"10.96.0.10:80/tcp"}, path: "sideways", err: "--trace-path"},
	} {
		o := newOpsOptions()
		o.trace = tc.trace
		if tc.path != "" {
			o.tracePath = tc.path
		}
		req, err := o.traceRequest(tc.args)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("--trace %q %q: err %v, want %q", tc.trace, tc.args, err, tc.err)
			}
			continue
		}
		if err != nil || req.pkt != tc.want || req.auto != tc.auto {
			t.Errorf("--trace %q %q = %+v auto %v, %v; want %+v auto %v", tc.trace, tc.args, req.pkt, req.auto, err, tc.want, tc.auto)
		}
	}
}

func TestOpsFlagCombinations(t *testing.T) {
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{args: []string{"--dump"}},
		{args: []string{"--dump", "--dump-format=json", "--dump-service=kube-system/dns"}},
		{args: []string{"--dump", "--dump-format=nft"}},
		{args: []string{"--cleanup"}},
		{args: []string{"--cleanup", "--force"}},
		{args: []string{"--force"}, err: "--force needs --cleanup"},
		{args: []string{"--dump", "--force"}, err: "--force needs --cleanup"},
		{args: []string{"--trace", "10.0.0.1", "10.96.0.1:443/tcp"}},
		{args: []string{}},
		{args: []string{"--dump", "--cleanup"}, err: "exclusive"},
		{args: []string{"--dump", "--trace", "10.0.0.1", "10.96.0.1:443"}, err: "exclusive"},
		{args: []string{"--dump-format=json"}, err: "need --dump"},
		{args: []string{"--trace-path=local"}, err: "needs --trace"},
		{args: []string{"--dump", "--dump-format=yaml"}, err: "want text, json or nft"},
		{args: []string{"--dump", "--dump-service=dns"}, err: "namespace/name"},
		{args: []string{"--dump", "--dump-format=nft", "--dump-service=a/b"}, err: "not nft"},
		{args: []string{"--dump", "extra"}, err: "unexpected arguments"},
		{args: []string{"stray"}, err: "unexpected arguments"},
	} {
		cmd := NewCommand()
		if err := cmd.ParseFlags(tc.args); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		err := cmd.Args(cmd, cmd.Flags().Args())
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%v: err %v, want %q", tc.args, err, tc.err)
		}
	}
}
