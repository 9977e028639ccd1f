package model

import (
	"net/netip"
	"testing"
)

func TestParseIP(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{in: "10.0.0.1", want: "10.0.0.1"},
		{in: "fd00::1", want: "fd00::1"},
		{in: "010.000.001.002", want: "10.0.1.2"}, // legacy leading zeros: decimal
		{in: "::ffff:10.1.2.3", want: "10.1.2.3"}, // mapped: treated as IPv4
		{in: "", wantErr: true},
		{in: "10.0.0", wantErr: true},
		{in: "10.0.0.256", wantErr: true},
		{in: "0256.0.0.1", wantErr: true},
		{in: "1.2.3.4.5", wantErr: true},
		{in: "fe80::1%eth0", wantErr: true},
		{in: "example.com", wantErr: true},
		{in: " 10.0.0.1", wantErr: true},
	}
	for _, tc := range tests {
		got, err := ParseIP(tc.in)
		if tc.wantErr {
			if err == nil {
				t.Errorf("ParseIP(%q) = %v, want error", tc.in, got)
			}
			continue
		}
		if err != nil || got != netip.MustParseAddr(tc.want) {
			t.Errorf("ParseIP(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}

func TestParseCIDR(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{in: "10.0.0.0/8", want: "10.0.0.0/8"},
		{in: " 10.1.2.3/8 ", want: "10.0.0.0/8"}, // trimmed, host bits cleared
		{in: "fd00::1/64", want: "fd00::/64"},
		{in: "010.0.0.0/8", want: "10.0.0.0/8"},
		{in: "::ffff:10.0.0.0/104", want: "10.0.0.0/8"},
		{in: "::ffff:0:0/95", wantErr: true},
		{in: "10.0.0.0/33", wantErr: true},
		{in: "010.0.0.0/33", wantErr: true},
		{in: "10.0.0.0", wantErr: true},
		{in: "garbage", wantErr: true},
	}
	for _, tc := range tests {
		got, err := ParseCIDR(tc.in)
		if tc.wantErr {
			if err == nil {
				t.Errorf("ParseCIDR(%q) = %v, want error", tc.in, got)
			}
			continue
		}
		if err != nil || got != netip.MustParsePrefix(tc.want) {
			t.Errorf("ParseCIDR(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}

func TestCheckEndpointIP(t *testing.T) {
	for in, ok := range map[string]bool{
		"10.0.0.1":        true,
		"fd00::5":         true,
		"0.0.0.0":         false,
		"::":              false,
		"127.0.0.1":       false,
		"::1":             false,
		"224.0.0.1":       false,
		"ff02::1":         false,
		"169.254.1.1":     false,
		"fe80::1":         false,
		"255.255.255.255": false,
	} {
		err := checkEndpointIP(netip.MustParseAddr(in))
		if (err == nil) != ok {
			t.Errorf("checkEndpointIP(%s) = %v, want ok=%v", in, err, ok)
		}
	}
}
