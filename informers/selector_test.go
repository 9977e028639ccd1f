package informers

import (
	"testing"

	"k8s.io/apimachinery/pkg/labels"
)

func TestLabelSelector(t *testing.T) {
	tests := []struct {
		proxyName string
		want      string
		matches   map[string]labels.Set
		excludes  map[string]labels.Set
		wantErr   bool
	}{
		{
			want: "!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name",
			matches: map[string]labels.Set{
				"unlabelled": {},
				"other":      {"app": "x"},
			},
			excludes: map[string]labels.Set{
				"owned":    {LabelServiceProxyName: "other"},
				"headless": {LabelHeadless: ""},
			},
		},
		{
			proxyName: "nftproxy",
			want:      "!service.kubernetes.io/headless,service.kubernetes.io/service-proxy-name=nftproxy",
			matches:   map[string]labels.Set{"ours": {LabelServiceProxyName: "nftproxy"}},
			excludes: map[string]labels.Set{
				"unlabelled":    {},
				"theirs":        {LabelServiceProxyName: "other"},
				"ours headless": {LabelServiceProxyName: "nftproxy", LabelHeadless: ""},
			},
		},
		{proxyName: "not a valid label value!", wantErr: true},
	}
	for _, tc := range tests {
		sel, err := LabelSelector(tc.proxyName)
		if tc.wantErr {
			if err == nil {
				t.Errorf("LabelSelector(%q) = %v, want error", tc.proxyName, sel)
			}
			continue
		}
		if err != nil {
			t.Fatalf("LabelSelector(%q): %v", tc.proxyName, err)
		}
		if got := sel.String(); got != tc.want {
			t.Errorf("LabelSelector(%q) = %q, want %q", tc.proxyName, got, tc.want)
		}
		for name, l := range tc.matches {
			if !sel.Matches(l) {
				t.Errorf("%q: %s should match", tc.proxyName, name)
			}
		}
		for name, l := range tc.excludes {
			if sel.Matches(l) {
				t.Errorf("%q: %s should not match", tc.proxyName, name)
			}
		}
	}
}
