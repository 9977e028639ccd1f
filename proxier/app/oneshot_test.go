package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/nftproxy/nftproxy/nftrules"
	"github.com/nftproxy/nftproxy/nftrules/dump"
	"github.com/nftproxy/nftproxy/nftrules/dump/schematest"
	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/nftrules/nft/nftfake"
	"github.com/nftproxy/nftproxy/nftrules/trace"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// The one-shot commands' logic on the fake kernel (package nftfake): what
// they read, print and delete, without root. The kernel tests
// (admin_kernel_test.go) run the same commands as processes against real
// tables and real packets.

// fakeTables returns a fake kernel holding the rules of st.
func fakeTables(t *testing.T, st *model.State) *nftfake.Fake {
	t.Helper()
	f := nftfake.New()
	if _, err := f.Sync(context.Background(), nftrules.Build(st), true); err != nil {
		t.Fatal(err)
	}
	return f
}

// decodeDump checks a JSON dump against docs/dump-schema.md and decodes it
// without tolerating unknown fields.
func decodeDump(t *testing.T, out string) *dump.Dump {
	t.Helper()
	var doc any
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	schema := schematest.Schema(t)
	if errs := schematest.Validate(schema, schema, doc); len(errs) > 0 {
		t.Fatalf("output violates docs/dump-schema.md:\n%s\n%s", strings.Join(errs, "\n"), out)
	}
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	var d dump.Dump
	if err := dec.Decode(&d); err != nil {
		t.Fatal(err)
	}
	return &d
}

func TestDumpComparesWithAPI(t *testing.T) {
	checkDumpComparesWithAPI(t, fakeTables(t, cliState()))
}

// checkDumpComparesWithAPI runs the dump of tables holding cliState
// against a fake API whose objects differ from it in known ways.
func checkDumpComparesWithAPI(t *testing.T, tables ourTables) {

	ready := true
	svc := func(name string, proto v1.Protocol, port int32, portName string, ips ...string) *v1.Service {
		return &v1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "test", Name: name},
			Spec: v1.ServiceSpec{Type: v1.ServiceTypeClusterIP, ClusterIP: ips[0], ClusterIPs: ips,
				SessionAffinity: v1.ServiceAffinityNone,
				Ports:           []v1.ServicePort{{Name: portName, Protocol: proto, Port: port}}},
		}
	}
	slice := func(svcName, suffix string, at discovery.AddressType, proto v1.Protocol, portName string, port int32, addrs ...string) *discovery.EndpointSlice {
		s := &discovery.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "test", Name: svcName + "-" + suffix, Labels: map[string]string{discovery.LabelServiceName: svcName}},
			AddressType: at,
			Ports:       []discovery.EndpointPort{{Name: &portName, Protocol: &proto, Port: &port}},
		}
		for _, a := range addrs {
			s.Endpoints = append(s.Endpoints, discovery.Endpoint{Addresses: []string{a}, Conditions: discovery.EndpointConditions{Ready: &ready, Serving: &ready}})
		}
		return s
	}
	objs := []runtime.Object{
		// As programmed.
		svc("web", v1.ProtocolTCP, 80, "", "10.96.0.10", "fd96::10"),
		slice("web", "v4", discovery.AddressTypeIPv4, v1.ProtocolTCP, "", 8080, "10.244.1.10", "10.244.1.11", "10.244.1.12"),
		slice("web", "v6", discovery.AddressTypeIPv6, v1.ProtocolTCP, "", 8080, "fd44::10", "fd44::11", "fd44::12"),
		svc("empty", v1.ProtocolTCP, 80, "", "10.96.0.12", "fd96::12"),
		// dns lost pod2 in the API.
		svc("dns", v1.ProtocolUDP, 53, "dns", "10.96.0.11", "fd96::11"),
		slice("dns", "v4", discovery.AddressTypeIPv4, v1.ProtocolUDP, "dns", 8080, "10.244.1.11"),
		slice("dns", "v6", discovery.AddressTypeIPv6, v1.ProtocolUDP, "dns", 8080, "fd44::11"),
		// new is not programmed.
		svc("new", v1.ProtocolTCP, 9000, "", "10.96.0.90"),
		slice("new", "v4", discovery.AddressTypeIPv4, v1.ProtocolTCP, "", 9000, "10.244.1.90"),
		// udp-empty exists without endpoints: as programmed. The rest
		// (self, web-udp, sig, other/far) is stale.
		svc("udp-empty", v1.ProtocolUDP, 5353, "", "10.96.0.15"),
	}
	client := fake.NewSimpleClientset(objs...)
	opts := &options{nodeName: "node", podRanges: cliClusterCIDRs}
	o := &opsOptions{dump: true, dumpFormat: "json", masqueradeConfigured: true}
	var buf bytes.Buffer
	err := dumpTo(context.Background(), &buf, o, tables, func(ctx context.Context) (*model.State, error) {
		return desiredFromClient(ctx, client, client, opts)
	})
	if err != nil {
		t.Fatal(err)
	}
	d := decodeDump(t, buf.String())
	if !d.ComparedWithAPI || d.Node != "node" {
		t.Errorf("comparedWithAPI %v node %q", d.ComparedWithAPI, d.Node)
	}
	drift := map[string]string{}
	for _, sp := range d.Services {
		key := sp.Namespace + "/" + sp.Name + ":" + sp.PortName
		drift[key] = strings.Join(sp.Drift, "; ")
		if sp.Name == "empty" || sp.Name == "udp-empty" {
			// Named through the API although the kernel does not record it.
			for _, fe := range sp.Frontends {
				if fe.Status != dump.StatusNoEndpoints || fe.Kind != dump.KindClusterIP {
					t.Errorf("%s %s: %s %s", key, fe.Address, fe.Kind, fe.Status)
				}
			}
		}
		if sp.Name == "web" && (sp.API == nil || sp.API.Endpoints != 6 || sp.API.SessionAffinity != "None") {
			t.Errorf("web API facts %+v", sp.API)
		}
	}
	stale := "programmed, but the API has no such Service port (or gives it nothing to program): stale rules"
	for key, want := range map[string]string{
		"test/web:":         "",
		"test/empty:":       "",
		"test/udp-empty:":   "",
		"test/dns:dns":      "ip 10.96.0.11: endpoints programmed but not in the API: 10.244.1.12:8080; ip6 fd96::11: endpoints programmed but not in the API: [fd44::12]:8080",
		"test/new:":         "ip 10.96.0.90: not programmed; the API wants DNAT to 1 endpoint(s)",
		"test/self:":        stale,
		"test/web-udp:":     stale,
		"test/sig:diameter": stale,
		"other/far:p":       stale,
		"test/np:":          stale,
	} {
		got, ok := drift[key]
		if !ok {
			t.Errorf("%s not in the dump (have %v)", key, drift)
			continue
		}
		if got != want {
			t.Errorf("%s drift:\n got %q\nwant %q", key, got, want)
		}
	}
	for _, tb := range d.Tables {
		if len(tb.Drift) > 0 {
			t.Errorf("table %s: drift %v (the masquerade configuration is the programmed one)", tb.Family, tb.Drift)
		}
	}
	if t.Failed() {
		t.Logf("dump:\n%s", buf.String())
	}
}

// TestDumpFormats: each --dump format of the tables as read back; nft is
// exactly the ruleset the kernel holds.
func TestDumpFormats(t *testing.T) {
	st := cliState()
	tables := fakeTables(t, st)
	noAPI := func(context.Context) (*model.State, error) { return nil, nil }
	dumpAs := func(t *testing.T, tables ourTables, o *opsOptions) string {
		t.Helper()
		var buf bytes.Buffer
		if err := dumpTo(context.Background(), &buf, o, tables, noAPI); err != nil {
			t.Fatal(err)
		}
		return buf.String()
	}

	t.Run("nft", func(t *testing.T) {
		if got, want := dumpAs(t, tables, &opsOptions{dumpFormat: "nft"}), tables.Dump(); got != want {
			t.Errorf("--dump-format=nft:\n%s\nthe kernel holds:\n%s", got, want)
		}
	})
	t.Run("json", func(t *testing.T) {
		d := decodeDump(t, dumpAs(t, tables, &opsOptions{dumpFormat: "json"}))
		if d.SchemaVersion != dump.SchemaVersion || d.ComparedWithAPI || len(d.Tables) != 2 {
			t.Errorf("header: version %d compared %v tables %d", d.SchemaVersion, d.ComparedWithAPI, len(d.Tables))
		}
		checkDumpHasState(t, d, st)
	})
	t.Run("text with --dump-service", func(t *testing.T) {
		out := dumpAs(t, tables, &opsOptions{dumpFormat: "text", dumpService: "test/dns"})
		if !strings.Contains(out, "test/dns:dns 53/UDP\n") || strings.Contains(out, "test/web") {
			t.Errorf("--dump-service test/dns:\n%s", out)
		}
	})
	t.Run("no tables", func(t *testing.T) {
		if out := dumpAs(t, nftfake.New(), &opsOptions{dumpFormat: "text"}); !strings.Contains(out, "no nftproxy tables in the kernel") {
			t.Errorf("dump without tables:\n%s", out)
		}
	})
}

// TestCleanupWith: both tables go in one transaction, reported with their
// size; a second cleanup has nothing to do; a refused one keeps them.
func TestCleanupWith(t *testing.T) {
	built := nftrules.Build(cliState())
	refused := fakeTables(t, cliState())
	refused.FailNext(errors.New("operation not permitted"))
	var out strings.Builder
	if err := cleanupWith(&out, refused, t.TempDir()); err == nil || !strings.Contains(err.Error(), "operation not permitted") {
		t.Errorf("refused cleanup: %v", err)
	}
	if err := refused.Compare(built); err != nil {
		t.Errorf("a refused cleanup changed the tables: %v", err)
	}

	tables := fakeTables(t, cliState())
	out.Reset()
	if err := cleanupWith(&out, tables, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for _, f := range nft.Families {
		tb := built.Tables[f]
		fmt.Fprintf(&want, "deleted table %s nftproxy (%d chains, %d sets)\n", f, tb.Chains.Len(), tb.Sets.Len())
	}
	if out.String() != want.String() {
		t.Errorf("cleanup printed\n%s\nwant\n%s", out.String(), want.String())
	}
	if left := tables.Dump(); left != "" {
		t.Errorf("left after cleanup:\n%s", left)
	}
	if recs := tables.Records(); len(recs[len(recs)-1].Tx.Ops) != 2 {
		t.Errorf("cleanup transaction: %+v, want the two table deletions", recs[len(recs)-1].Tx)
	}
	out.Reset()
	if err := cleanupWith(&out, tables, t.TempDir()); err != nil || out.String() != "no nftproxy tables: nothing to clean up\n" {
		t.Errorf("second cleanup: %q, %v", out.String(), err)
	}
}

// TestTraceWith: --trace follows the packet through the tables as read
// back (Opaque rules parsed again).
func TestTraceWith(t *testing.T) {
	tables := fakeTables(t, cliState())
	traceOf := func(dst string, port uint16) string {
		t.Helper()
		var buf bytes.Buffer
		pkt := trace.Packet{Src: cliClient4, Dst: netip.MustParseAddr(dst), Proto: nft.TCP, DstPort: port, Path: trace.Forwarded}
		if err := traceWith(&buf, pkt, tables); err != nil {
			t.Fatal(err)
		}
		return buf.String()
	}
	web := parseTraceResult(t, traceOf("10.96.0.10", 80))
	if want := []string{"10.244.1.10:8080", "10.244.1.11:8080", "10.244.1.12:8080"}; web.outcome != "DNAT" || strings.Join(web.targets, ",") != strings.Join(want, ",") {
		t.Errorf("test/web: %+v, want DNAT to %v", web, want)
	}
	if empty := parseTraceResult(t, traceOf("10.96.0.12", 80)); empty.outcome != "reject" {
		t.Errorf("test/empty: %+v, want reject", empty)
	}
	if err := tables.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if out := traceOf("10.96.0.10", 80); !strings.Contains(out, "no table ip nftproxy") || parseTraceResult(t, out).outcome != "accept" {
		t.Errorf("trace without tables:\n%s", out)
	}
}
