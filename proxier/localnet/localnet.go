// Package localnet owns the one setting nftproxy changes outside its
// tables, net.ipv4.conf.all.route_localnet: the proxy's setup (Setup)
// sets or restores it, --cleanup (Cleanup) restores it.
//
// Localhost NodePorts need net.ipv4.conf.all.route_localnet=1: a
// connection from 127.0.0.1 DNATed to a pod must be routed out. The sysctl
// would also let other hosts reach the node's 127.0.0.0/8 services, which
// the filter-prerouting guard rule drops (CVE-2020-8558). So nftproxy sets
// it only once a sync that installed the guard has succeeded, and records
// the value it replaced in a file of --state-dir, so that --cleanup (or a
// later start without localhost NodePorts) puts it back. Nothing is
// recorded when the sysctl was already 1: then it is not ours to reset.
// The record lives in /run by default, a tmpfs: like the sysctl itself it
// does not survive a reboot.
package localnet

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/klog/v2"

	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/proxier"
)

// routeLocalnetSysctl is the sysctl's file (in the network namespace of
// the process reading it).
var routeLocalnetSysctl = "/proc/sys/net/ipv4/conf/all/route_localnet"

// RecordName is the record's file name in --state-dir: it holds the
// value nftproxy replaced with 1.
const RecordName = "route_localnet.original"

// routeLocalnet sets the sysctl after the first sync that installed the
// guard. Its afterSync runs on the sync goroutine.
type routeLocalnet struct {
	record string // the record's path
	done   bool
}

func newRouteLocalnet(stateDir string) *routeLocalnet {
	return &routeLocalnet{record: filepath.Join(stateDir, RecordName)}
}

// Setup is the proxy's start: with localhost NodePorts it returns the hook
// to run after every sync (proxier.Config.OnSync), which sets the sysctl
// once the guard rule is in the kernel; without them it restores the value
// an earlier run replaced, if any, and returns nil.
func Setup(nodePorts proxier.NodePortAddresses, stateDir string) (afterSync func(proxier.SyncInfo)) {
	if nodePorts.NeedsRouteLocalnet() {
		return newRouteLocalnet(stateDir).afterSync
	}
	if _, err := restoreRouteLocalnet(io.Discard, stateDir); err != nil {
		klog.ErrorS(err, "Localhost NodePorts are off but route_localnet, set by an earlier run, could not be restored")
	}
	return nil
}

// afterSync sets route_localnet=1 after the first successful sync whose
// rules serve NodePorts on an IPv4 loopback address (and so hold the
// guard rule).
func (r *routeLocalnet) afterSync(info proxier.SyncInfo) {
	if r.done || info.Err != nil || info.State == nil || !hasIPv4Loopback(info.State.NodePortIPs) {
		return
	}
	r.done = true // one attempt: a failure is logged once, not at every sync
	old, err := readSysctl(routeLocalnetSysctl)
	if err != nil {
		klog.ErrorS(err, "Cannot read net.ipv4.conf.all.route_localnet; localhost NodePorts will not work")
		return
	}
	_, statErr := os.Stat(r.record)
	ours := statErr == nil // an earlier run recorded the original value
	if old == "1" {
		klog.InfoS("net.ipv4.conf.all.route_localnet is already 1; localhost NodePorts work", "setByNftproxy", ours)
		return
	}
	if !ours {
		if err := writeRecord(r.record, old); err != nil {
			klog.ErrorS(err, "Cannot record net.ipv4.conf.all.route_localnet's value; --cleanup will not restore it", "value", old)
		} else {
			ours = true
		}
	}
	if err := os.WriteFile(routeLocalnetSysctl, []byte("1"), 0o644); err != nil {
		if ours && statErr != nil {
			_ = os.Remove(r.record) // we changed nothing
		}
		klog.ErrorS(err, "Cannot set net.ipv4.conf.all.route_localnet=1; localhost NodePorts will not work "+
			"(in an unprivileged container /proc/sys is read-only: set it on the node)")
		return
	}
	klog.InfoS("Set net.ipv4.conf.all.route_localnet=1 for localhost NodePorts", "was", old, "record", r.record, "recorded", ours)
}

// hasIPv4Loopback: localhost NodePorts (the rules then hold the guard).
func hasIPv4Loopback(ips []netip.Addr) bool {
	for _, ip := range ips {
		if ip.Unmap().Is4() && ip.IsLoopback() {
			return true
		}
	}
	return false
}

// restoreRouteLocalnet puts back the value recorded in stateDir, if any,
// and removes the record, reporting it to out. Without a record it does
// nothing (restored false).
func restoreRouteLocalnet(out io.Writer, stateDir string) (restored bool, err error) {
	record := filepath.Join(stateDir, RecordName)
	b, err := os.ReadFile(record)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read route_localnet record: %w", err)
	}
	old := strings.TrimSpace(string(b))
	if old != "0" && old != "1" {
		return false, fmt.Errorf("route_localnet record %s holds %q, not 0 or 1: not restored", record, old)
	}
	if err := os.WriteFile(routeLocalnetSysctl, []byte(old), 0o644); err != nil {
		return false, fmt.Errorf("restore net.ipv4.conf.all.route_localnet=%s: %w", old, err)
	}
	if err := os.Remove(record); err != nil {
		return true, fmt.Errorf("remove route_localnet record: %w", err)
	}
	klog.InfoS("Restored net.ipv4.conf.all.route_localnet", "value", old)
	fmt.Fprintf(out, "restored net.ipv4.conf.all.route_localnet=%s (nftproxy had set it to 1 for localhost NodePorts)\n", old)
	return true, nil
}

func readSysctl(path string) (string, error) {
	b, err := os.ReadFile(path)
	return strings.TrimSpace(string(b)), err
}

func writeRecord(path, value string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(value+"\n"), 0o644)
}

// Cleanup is --cleanup's part: restore the recorded value, or
// say why route_localnet stays 1 when our rules served localhost NodePorts.
func Cleanup(out io.Writer, live *nft.Ruleset, stateDir string) error {
	restored, err := restoreRouteLocalnet(out, stateDir)
	if err != nil {
		return err
	}
	if restored || !localhostNodePorts(live) {
		return nil
	}
	if v, err := readSysctl(routeLocalnetSysctl); err == nil && v == "1" {
		fmt.Fprintf(out, "net.ipv4.conf.all.route_localnet left at 1: no record in %s that nftproxy changed it\n", stateDir)
	}
	return nil
}

// localhostNodePorts: our IPv4 table serves NodePorts on a loopback
// address (its rules hold the route_localnet guard).
func localhostNodePorts(live *nft.Ruleset) bool {
	t := live.Tables[nft.IPv4]
	if t == nil || t.Sets.Get(nftrules.SetNodePortIPs) == nil {
		return false
	}
	var ips []netip.Addr
	for _, e := range t.Sets.Get(nftrules.SetNodePortIPs).SortedElements() {
		if len(e.Key) == 1 {
			ips = append(ips, e.Key[0].Addr)
		}
	}
	return hasIPv4Loopback(ips)
}
