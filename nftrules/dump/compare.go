package dump

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/nftproxy/nftproxy/nftrules/nft"
	"github.com/nftproxy/nftproxy/proxier/model"
)

// Compare marks in live every Service port (and table setting) whose
// programmed state differs from desired, the view of what the API says
// (FromRuleset(nftrules.Build(st), NamesOf(st))), attaches the API's facts
// from st, and adds the ports the API has but the kernel lacks (families
// with status "missing"). Endpoint IDs and map placement are not compared:
// they depend on the order in which a running proxier saw the Services.
// withMasquerade compares the masquerade policy too (only meaningful when
// the caller knows the proxy's --cluster-cidr/--masquerade-all).
func Compare(live, desired *Dump, st *model.State, withMasquerade bool) {
	live.ComparedWithAPI = true
	live.Node = st.NodeName

	api := map[string]*model.ServicePort{}
	for sp := range st.All() {
		api[nameKey(sp.Name.Namespace, sp.Name.Name, sp.Name.Port, strings.ToUpper(string(sp.Protocol)))] = sp
	}
	want := map[string]*ServicePort{}
	for i := range desired.Services {
		want[portKey(&desired.Services[i])] = &desired.Services[i]
	}
	seen := map[string]bool{}
	for i := range live.Services {
		sp := &live.Services[i]
		k := portKey(sp)
		seen[k] = true
		if a, ok := api[k]; ok {
			sp.API = apiPort(a)
		}
		w, ok := want[k]
		if !ok {
			sp.Drift = append(sp.Drift, "programmed, but the API has no such Service port (or gives it nothing to program): stale rules")
			continue
		}
		compareFrontends(sp, w)
	}
	for i := range desired.Services {
		w := &desired.Services[i]
		k := portKey(w)
		if seen[k] {
			continue
		}
		sp := *w
		sp.Frontends = nil
		sp.Problems = nil
		if a, ok := api[k]; ok {
			sp.API = apiPort(a)
		}
		for _, fe := range w.Frontends {
			sp.Drift = append(sp.Drift, fmt.Sprintf("%s %s: not programmed; the API wants %s", fe.Family, frontendText(fe), describe(fe)))
			fe.Status, fe.Chain, fe.Map, fe.FirstKey, fe.Endpoints = StatusMissing, "", "", 0, []Endpoint{}
			sp.Frontends = append(sp.Frontends, fe)
		}
		live.Services = append(live.Services, sp)
	}
	sortServicePorts(live.Services)

	wantTables := map[string]Table{}
	for _, t := range desired.Tables {
		wantTables[t.Family] = t
	}
	for i := range live.Tables {
		t := &live.Tables[i]
		w, ok := wantTables[t.Family]
		delete(wantTables, t.Family)
		if !ok {
			t.Drift = append(t.Drift, "table not expected from the API")
			continue
		}
		if withMasquerade && !masqueradeEqual(t.Masquerade, w.Masquerade) {
			t.Drift = append(t.Drift, fmt.Sprintf("masquerade is %s, the configuration wants %s", masqText(t.Masquerade), masqText(w.Masquerade)))
		}
	}
	for _, f := range nft.Families {
		if w, ok := wantTables[string(f)]; ok {
			live.Tables = append(live.Tables, Table{Family: w.Family, Name: w.Name, Masquerade: Masquerade{Mode: MasqueradeNone}, Drift: []string{"table missing from the kernel"}})
		}
	}
}

// portKey identifies a Service port across views: its name when known,
// else its first frontend.
func portKey(sp *ServicePort) string {
	if sp.Name != "" {
		return nameKey(sp.Namespace, sp.Name, sp.PortName, sp.Protocol)
	}
	k := "?" + sp.Protocol + fmt.Sprint(sp.Port)
	if len(sp.Frontends) > 0 {
		k += " " + frontendKey(sp.Frontends[0])
	}
	return k
}

func nameKey(ns, name, port, proto string) string { return ns + "/" + name + "/" + port + "/" + proto }

func frontendKey(fe Frontend) string {
	return fmt.Sprintf("%s %s %d", fe.Family, frontendText(fe), fe.Port)
}

func compareFrontends(sp, want *ServicePort) {
	for _, w := range want.Frontends {
		i := slices.IndexFunc(sp.Frontends, func(fe Frontend) bool { return frontendKey(fe) == frontendKey(w) })
		where := w.Family + " " + frontendText(w)
		if i < 0 {
			sp.Drift = append(sp.Drift, fmt.Sprintf("%s: not programmed; the API wants %s", where, describe(w)))
			m := w
			m.Status, m.Chain, m.Map, m.FirstKey, m.Endpoints = StatusMissing, "", "", 0, []Endpoint{}
			sp.Frontends = append(sp.Frontends, m)
			continue
		}
		got := sp.Frontends[i]
		if got.Kind != w.Kind && got.Kind != KindIP && w.Kind != KindIP {
			sp.Drift = append(sp.Drift, fmt.Sprintf("%s: programmed as %s, the API says %s", where, got.Kind, w.Kind))
		}
		if got.Status != w.Status {
			sp.Drift = append(sp.Drift, fmt.Sprintf("%s: %s, the API wants %s", where, describe(got), describe(w)))
			continue
		}
		extra, missing := endpointDiff(got.Endpoints, w.Endpoints)
		if len(extra) > 0 {
			sp.Drift = append(sp.Drift, fmt.Sprintf("%s: endpoints programmed but not in the API: %s", where, strings.Join(extra, ", ")))
		}
		if len(missing) > 0 {
			sp.Drift = append(sp.Drift, fmt.Sprintf("%s: endpoints in the API but not programmed: %s", where, strings.Join(missing, ", ")))
		}
		if got.AffinityTimeoutSeconds != w.AffinityTimeoutSeconds {
			sp.Drift = append(sp.Drift, fmt.Sprintf("%s: session affinity timeout %d s programmed, the API wants %d s (0: none)", where, got.AffinityTimeoutSeconds, w.AffinityTimeoutSeconds))
		}
		if got.SourceDependent != w.SourceDependent {
			sp.Drift = append(sp.Drift, fmt.Sprintf("%s: source-dependent choice is %v, the API wants %v", where, got.SourceDependent, w.SourceDependent))
		}
	}
	for _, got := range sp.Frontends {
		if got.Status != StatusMissing && !slices.ContainsFunc(want.Frontends, func(fe Frontend) bool { return frontendKey(fe) == frontendKey(got) }) {
			sp.Drift = append(sp.Drift, fmt.Sprintf("%s %s: programmed, but not in the API", got.Family, frontendText(got)))
		}
	}
	sortFrontends(sp.Frontends)
}

// endpointDiff compares two endpoint lists as multisets.
func endpointDiff(got, want []Endpoint) (extra, missing []string) {
	count := map[string]int{}
	for _, e := range want {
		count[e.String()]++
	}
	for _, e := range got {
		count[e.String()]--
	}
	for k, n := range count {
		for ; n < 0; n++ {
			extra = append(extra, k)
		}
		for ; n > 0; n-- {
			missing = append(missing, k)
		}
	}
	slices.Sort(extra)
	slices.Sort(missing)
	return extra, missing
}

func (e Endpoint) String() string {
	a, err := netip.ParseAddr(e.Address)
	if err != nil {
		return fmt.Sprintf("%s:%d", e.Address, e.Port)
	}
	return netip.AddrPortFrom(a, e.Port).String()
}

func describe(fe Frontend) string {
	switch fe.Status {
	case StatusActive:
		return fmt.Sprintf("DNAT to %d endpoint(s)", len(fe.Endpoints))
	case StatusNoEndpoints:
		return "no endpoints (reject)"
	case StatusDrop:
		return "drop"
	}
	return fe.Status
}

func masqueradeEqual(a, b Masquerade) bool {
	return a.Mode == b.Mode && slices.Equal(a.ClusterCIDRs, b.ClusterCIDRs)
}

func masqText(m Masquerade) string {
	if m.Mode == MasqueradeOffCluster {
		return "off-cluster (outside " + strings.Join(m.ClusterCIDRs, ", ") + ")"
	}
	return m.Mode
}

func apiPort(sp *model.ServicePort) *APIPort {
	a := &APIPort{
		ClusterIPs:            addrs(sp.ClusterIPs),
		NodePort:              sp.NodePort,
		ExternalIPs:           addrs(sp.ExternalIPs),
		LoadBalancerIPs:       addrs(sp.LoadBalancerIPs),
		SessionAffinity:       "None",
		ExternalTrafficPolicy: "Cluster",
		InternalTrafficPolicy: "Cluster",
		Endpoints:             len(sp.Endpoints),
	}
	if sp.SessionAffinityClientIP {
		a.SessionAffinity, a.AffinityTimeoutSeconds = "ClientIP", sp.AffinityTimeoutSeconds
	}
	if sp.ExternalPolicyLocal {
		a.ExternalTrafficPolicy = "Local"
	}
	if sp.InternalPolicyLocal {
		a.InternalTrafficPolicy = "Local"
	}
	return a
}

func addrs(as []netip.Addr) []string {
	if len(as) == 0 {
		return nil
	}
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}
