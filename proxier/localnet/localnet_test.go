package localnet

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nftproxy/nftproxy/proxier"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// fakeRouteLocalnet points the sysctl at a file holding value and returns
// its path and a state directory.
func fakeRouteLocalnet(t *testing.T, value string) (sysctl, stateDir string) {
	t.Helper()
	dir := t.TempDir()
	sysctl = filepath.Join(dir, "route_localnet")
	if err := os.WriteFile(sysctl, []byte(value+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := routeLocalnetSysctl
	t.Cleanup(func() { routeLocalnetSysctl = old })
	routeLocalnetSysctl = sysctl
	return sysctl, filepath.Join(dir, "state")
}

func fileText(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestRouteLocalnetSetAfterGuardedSync: route_localnet becomes 1 only after
// a successful sync whose rules hold the guard (a 127.0.0.1 NodePort
// address), and the value it replaced is recorded; before, it was set at
// start-up, before any rule existed, and never recorded.
func TestRouteLocalnetSetAfterGuardedSync(t *testing.T) {
	sysctl, dir := fakeRouteLocalnet(t, "0")
	rl := newRouteLocalnet(dir)
	localhost := &model.State{NodePortIPs: []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("192.0.2.10")}}
	noLocalhost := &model.State{NodePortIPs: []netip.Addr{netip.MustParseAddr("192.0.2.10")}}

	rl.afterSync(proxier.SyncInfo{State: localhost, Err: errors.New("transaction failed")})
	rl.afterSync(proxier.SyncInfo{State: noLocalhost})
	if got := fileText(t, sysctl); got != "0" {
		t.Fatalf("route_localnet %s before a successful sync with the guard, want 0", got)
	}
	rl.afterSync(proxier.SyncInfo{State: localhost})
	if got := fileText(t, sysctl); got != "1" {
		t.Errorf("route_localnet %s after the guarded sync, want 1", got)
	}
	if got := fileText(t, filepath.Join(dir, RecordName)); got != "0" {
		t.Errorf("recorded %q, want the replaced value 0", got)
	}

	// --cleanup puts it back and forgets the record; a second one has
	// nothing to do.
	var out bytes.Buffer
	if restored, err := restoreRouteLocalnet(&out, dir); err != nil || !restored {
		t.Fatalf("restore: %v, %v", restored, err)
	}
	if got := fileText(t, sysctl); got != "0" || !strings.Contains(out.String(), "restored net.ipv4.conf.all.route_localnet=0") {
		t.Errorf("after restore: route_localnet %s, output %q", got, out.String())
	}
	if restored, err := restoreRouteLocalnet(&out, dir); err != nil || restored {
		t.Errorf("second restore: %v, %v; want nothing to do", restored, err)
	}
}

// TestRouteLocalnetAlreadySetIsNotOurs: a route_localnet that was 1
// before nftproxy is not recorded, so --cleanup leaves it at 1.
func TestRouteLocalnetAlreadySetIsNotOurs(t *testing.T) {
	sysctl, dir := fakeRouteLocalnet(t, "1")
	newRouteLocalnet(dir).afterSync(proxier.SyncInfo{State: &model.State{NodePortIPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}})
	if _, err := os.Stat(filepath.Join(dir, RecordName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("record written for a value nftproxy did not change: %v", err)
	}
	if restored, err := restoreRouteLocalnet(&bytes.Buffer{}, dir); err != nil || restored || fileText(t, sysctl) != "1" {
		t.Errorf("restore: %v, %v, route_localnet %s; want nothing restored, still 1", restored, err, fileText(t, sysctl))
	}
}
