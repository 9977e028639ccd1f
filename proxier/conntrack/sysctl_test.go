package conntrack_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nftproxy/nftproxy/proxier/conntrack"
)

// fakeRoot is a /proc/sys and /sys tree with the kernel's defaults of a
// 2-CPU node whose nf_conntrack_max is 65536.
type fakeRoot struct {
	t     *testing.T
	roots conntrack.SysctlRoots
}

var kernelDefaults = map[string]int{
	"proc/net/netfilter/nf_conntrack_max":                     65536,
	"proc/net/netfilter/nf_conntrack_tcp_timeout_established": 432000,
	"proc/net/netfilter/nf_conntrack_tcp_timeout_close_wait":  60,
	"proc/net/netfilter/nf_conntrack_tcp_be_liberal":          0,
	"proc/net/netfilter/nf_conntrack_udp_timeout":             30,
	"proc/net/netfilter/nf_conntrack_udp_timeout_stream":      120,
	"sys/module/nf_conntrack/parameters/hashsize":             16384,
}

func newFakeRoot(t *testing.T, cpus int) *fakeRoot {
	dir := t.TempDir()
	for path, v := range kernelDefaults {
		p := filepath.Join(dir, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(strconv.Itoa(v)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return &fakeRoot{t: t, roots: conntrack.SysctlRoots{
		ProcSys: filepath.Join(dir, "proc"), Sys: filepath.Join(dir, "sys"), NumCPU: func() int { return cpus },
	}}
}

func (f *fakeRoot) get(path string) int {
	f.t.Helper()
	b, err := os.ReadFile(filepath.Join(filepath.Dir(f.roots.ProcSys), path))
	if err != nil {
		f.t.Fatal(err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		f.t.Fatal(err)
	}
	return v
}

// values returns every file that differs from the kernel's default.
func (f *fakeRoot) changed() map[string]int {
	out := map[string]int{}
	for path, def := range kernelDefaults {
		if v := f.get(path); v != def {
			out[path] = v
		}
	}
	return out
}

func TestSysctlsKubeProxyDefaultsOnTwoCPUs(t *testing.T) {
	f := newFakeRoot(t, 2)
	changes, err := conntrack.KubeProxyDefaults().Apply(f.roots)
	if err != nil {
		t.Fatal(err)
	}
	// 32768 x 2 CPUs is below the 131072 minimum; hashsize follows at max/4.
	want := map[string]int{
		"proc/net/netfilter/nf_conntrack_max":                     131072,
		"sys/module/nf_conntrack/parameters/hashsize":             32768,
		"proc/net/netfilter/nf_conntrack_tcp_timeout_established": 86400,
		"proc/net/netfilter/nf_conntrack_tcp_timeout_close_wait":  3600,
	}
	assertValues(t, f.changed(), want)
	if len(changes) != 4 {
		t.Errorf("got %d changes %+v, want 4", len(changes), changes)
	}
}

func TestSysctlsSecondApplyWritesNothing(t *testing.T) {
	f := newFakeRoot(t, 2)
	if _, err := conntrack.KubeProxyDefaults().Apply(f.roots); err != nil {
		t.Fatal(err)
	}
	// What the unprivileged container does after the init container ran:
	// every value is right, so no file is opened for writing (which a
	// read-only /proc/sys would refuse; the kernel test shows that).
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	dir := filepath.Dir(f.roots.ProcSys)
	for path := range kernelDefaults {
		if err := os.Chtimes(filepath.Join(dir, path), old, old); err != nil {
			t.Fatal(err)
		}
	}
	changes, err := conntrack.KubeProxyDefaults().Apply(f.roots)
	if err != nil || len(changes) != 0 {
		t.Fatalf("second Apply: changes %+v, err %v; want none", changes, err)
	}
	for path := range kernelDefaults {
		if st, err := os.Stat(filepath.Join(dir, path)); err != nil || !st.ModTime().Equal(old) {
			t.Errorf("%s was written again (%v)", path, err)
		}
	}
}

func TestSysctlsMaxIsScaledCappedAndNeverLowered(t *testing.T) {
	for _, tc := range []struct {
		name            string
		cpus            int
		maxPerCore, min int32
		wantMax         int // 0: unchanged
	}{
		{"scaled above min", 8, 32768, 131072, 262144},
		{"min above scaled", 2, 32768, 131072, 131072},
		{"capped at 2^20", 64, 32768, 131072, 1 << 20},
		{"zero per core leaves max and min alone", 2, 0, 1 << 20, 0},
		{"never lowered", 1, 1000, 1000, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeRoot(t, tc.cpus)
			if _, err := (conntrack.Sysctls{MaxPerCore: tc.maxPerCore, Min: tc.min}).Apply(f.roots); err != nil {
				t.Fatal(err)
			}
			want := map[string]int{}
			if tc.wantMax != 0 {
				want["proc/net/netfilter/nf_conntrack_max"] = tc.wantMax
				want["sys/module/nf_conntrack/parameters/hashsize"] = tc.wantMax / 4
			}
			assertValues(t, f.changed(), want)
		})
	}
}

func TestSysctlsZeroLeavesAloneOthersAreWrittenInSeconds(t *testing.T) {
	f := newFakeRoot(t, 2)
	s := conntrack.Sysctls{TCPBeLiberal: true, UDPTimeout: 45 * time.Second, UDPStreamTimeout: 3*time.Minute + 500*time.Millisecond}
	if _, err := s.Apply(f.roots); err != nil {
		t.Fatal(err)
	}
	assertValues(t, f.changed(), map[string]int{
		"proc/net/netfilter/nf_conntrack_tcp_be_liberal":     1,
		"proc/net/netfilter/nf_conntrack_udp_timeout":        45,
		"proc/net/netfilter/nf_conntrack_udp_timeout_stream": 180,
	})
}

func TestSysctlsHashsizeRaisedEvenWhenMaxIsAlreadyHigh(t *testing.T) {
	f := newFakeRoot(t, 2)
	if err := os.WriteFile(filepath.Join(f.roots.ProcSys, "net/netfilter/nf_conntrack_max"), []byte("524288"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := (conntrack.Sysctls{MaxPerCore: 32768, Min: 131072}).Apply(f.roots); err != nil {
		t.Fatal(err)
	}
	// kube-proxy sizes the hash table by its own max, not the kernel's.
	assertValues(t, f.changed(), map[string]int{
		"proc/net/netfilter/nf_conntrack_max":         524288,
		"sys/module/nf_conntrack/parameters/hashsize": 32768,
	})
}

func TestSysctlsMissingModuleIsAnError(t *testing.T) {
	f := newFakeRoot(t, 2)
	if err := os.Remove(filepath.Join(f.roots.ProcSys, "net/netfilter/nf_conntrack_tcp_timeout_close_wait")); err != nil {
		t.Fatal(err)
	}
	_, err := conntrack.Sysctls{TCPCloseWaitTimeout: time.Hour}.Apply(f.roots)
	if err == nil || !strings.Contains(err.Error(), "nf_conntrack module") {
		t.Fatalf("err = %v, want a hint at the nf_conntrack module", err)
	}
}

func assertValues(t *testing.T, got, want map[string]int) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d", k, got[k], v)
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s changed to %d, want the kernel's default", k, v)
		}
	}
}
