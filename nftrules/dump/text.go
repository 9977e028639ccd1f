package dump

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/nftproxy/nftproxy/nftrules/nft"
)

// Filter keeps only the Service ports of one Service ("namespace/name").
// Tables are kept (they are the context of the ports).
func (d *Dump) Filter(namespace, name string) {
	kept := d.Services[:0]
	for _, sp := range d.Services {
		if sp.Namespace == namespace && sp.Name == name {
			kept = append(kept, sp)
		}
	}
	d.Services = kept
}

// WriteJSON writes the dump as indented JSON (docs/dump-schema.md), the
// bytes json.Encoder with a two-space indent writes. The Service ports
// are marshalled one at a time: encoding/json marshals a whole value and
// then indents it, two copies of a document that is 16 MB at 10,000
// Services.
func (d *Dump) WriteJSON(w io.Writer) error {
	if d.Services == nil { // "services": null, nothing to stream
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(d); err != nil {
			return fmt.Errorf("write JSON dump: %w", err)
		}
		return nil
	}
	head := *d
	head.Services = []ServicePort{}
	b, err := json.MarshalIndent(&head, "", "  ")
	if err != nil {
		return fmt.Errorf("write JSON dump: %w", err)
	}
	// The document ends with the (empty) services array: `[]` and `}`.
	const tail = "[]\n}"
	if !bytes.HasSuffix(b, []byte(tail)) {
		return fmt.Errorf("write JSON dump: services are not the last field")
	}
	bw := bufio.NewWriterSize(w, 1<<16)
	bw.Write(b[:len(b)-len(tail)])
	if len(d.Services) == 0 {
		bw.WriteString(tail)
	} else {
		bw.WriteString("[\n    ")
		for i := range d.Services {
			if i > 0 {
				bw.WriteString(",\n    ")
			}
			sp, err := json.MarshalIndent(&d.Services[i], "    ", "  ")
			if err != nil {
				return fmt.Errorf("write JSON dump: %w", err)
			}
			bw.Write(sp)
		}
		bw.WriteString("\n  ]\n}")
	}
	bw.WriteByte('\n')
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write JSON dump: %w", err)
	}
	return nil
}

// WriteText writes the per-Service view for humans.
func (d *Dump) WriteText(w io.Writer) error {
	b := bufio.NewWriterSize(w, 1<<16)
	if len(d.Tables) == 0 {
		fmt.Fprintln(b, "no nftproxy tables in the kernel")
	}
	for _, t := range d.Tables {
		unread := ""
		if len(t.UnreadSets) > 0 {
			unread = " (not read: " + strings.Join(t.UnreadSets, ", ") + ")"
		}
		fmt.Fprintf(b, "table %s %s: %d chains, %d rules, %d sets, %d elements%s; ClusterIP masquerade: %s\n",
			t.Family, t.Name, t.Chains, t.Rules, t.Sets, t.Elements, unread, masqText(t.Masquerade))
		for _, p := range t.Problems {
			fmt.Fprintf(b, "  PROBLEM: %s\n", p)
		}
		for _, p := range t.Drift {
			fmt.Fprintf(b, "  DRIFT: %s\n", p)
		}
	}
	if err := writePorts(b, d.Services); err != nil {
		return fmt.Errorf("write dump: %w", err)
	}
	endpoints, drifted, broken := 0, 0, 0
	for i := range d.Services {
		sp := &d.Services[i]
		for _, fe := range sp.Frontends {
			if fe.Kind == KindClusterIP {
				endpoints += len(fe.Endpoints)
			}
		}
		if len(sp.Drift) > 0 {
			drifted++
		}
		if len(sp.Problems) > 0 {
			broken++
		}
	}
	fmt.Fprintf(b, "\n%d service ports, %d cluster IP endpoints", len(d.Services), endpoints)
	if d.ComparedWithAPI {
		fmt.Fprintf(b, "; %d differ from the API (node %s)", drifted, d.Node)
	} else {
		b.WriteString(" (kernel view only: no API comparison)")
	}
	if broken > 0 {
		fmt.Fprintf(b, "; %d with problems", broken)
	}
	b.WriteByte('\n')
	if err := b.Flush(); err != nil {
		return fmt.Errorf("write dump: %w", err)
	}
	return nil
}

// writePorts writes the Service ports' paragraphs, each after an empty
// line. Above minParallel ports, chunks of them are rendered on the cores
// (a tenth of the dump's time at 10k Services) into buffers of a pool and
// written in order as each is done: memory stays a few chunks, not the
// whole text.
func writePorts(b *bufio.Writer, sps []ServicePort) error {
	workers := len(partsOf(len(sps)))
	if workers == 1 {
		for i := range sps {
			b.WriteByte('\n')
			writePort(b, &sps[i])
		}
		return nil
	}
	chunks := (len(sps) + textChunk - 1) / textChunk
	rendered := make([]chan *bytes.Buffer, chunks)
	for i := range rendered {
		rendered[i] = make(chan *bytes.Buffer, 1)
	}
	tokens := make(chan struct{}, 2*workers) // chunks rendered, not yet written
	pool := sync.Pool{New: func() any { return new(bytes.Buffer) }}
	var next atomic.Int64
	for range workers {
		go func() {
			for {
				// The token first: a chunk claimed is then always
				// rendered, whatever the chunks after it hold.
				tokens <- struct{}{}
				i := int(next.Add(1) - 1)
				if i >= chunks {
					<-tokens
					return
				}
				buf := pool.Get().(*bytes.Buffer)
				buf.Reset()
				pb := bufio.NewWriterSize(buf, 1<<12)
				for j := i * textChunk; j < min((i+1)*textChunk, len(sps)); j++ {
					pb.WriteByte('\n')
					writePort(pb, &sps[j])
				}
				pb.Flush() // into memory: cannot fail
				rendered[i] <- buf
			}
		}()
	}
	var err error
	for _, r := range rendered {
		buf := <-r
		if err == nil {
			_, err = b.Write(buf.Bytes())
		}
		pool.Put(buf)
		<-tokens
	}
	return err
}

// textChunk is how many Service ports one worker renders at a time.
const textChunk = 256

func writePort(b *bufio.Writer, sp *ServicePort) {
	switch {
	case sp.Name == "":
		b.WriteString("(name not recorded in the kernel for rejected or dropped traffic; --kubeconfig names it)")
	default:
		b.WriteString(sp.Namespace + "/" + sp.Name)
		if sp.PortName != "" {
			b.WriteString(":" + sp.PortName)
		}
		if sp.NameTruncated {
			b.WriteString("… (name cut in the chain name)")
		}
	}
	// The lines of every frontend are written without fmt (10k Services:
	// a third of the text's time went to Fprintf).
	b.WriteByte(' ')
	writeInt(b, int(sp.Port))
	b.WriteString("/" + sp.Protocol + "\n")
	var prev []Endpoint
	for _, fe := range sp.Frontends {
		b.WriteString("  ")
		writePadded(b, fe.Family, 3)
		b.WriteByte(' ')
		writePadded(b, fe.Kind, 10)
		b.WriteByte(' ')
		writePadded(b, frontendAddr(fe), 22)
		b.WriteByte(' ')
		switch fe.Status {
		case StatusActive:
			n := len(fe.Endpoints)
			b.WriteString("DNAT to ")
			writeInt(b, n)
			b.WriteString(" endpoint")
			switch {
			case fe.SourceDependent:
				b.WriteString("s (which depends on the client: traffic policy Local)")
			case n != 1:
				b.WriteString("s, 1/")
				writeInt(b, n)
				b.WriteString(" each")
			}
			if fe.AffinityTimeoutSeconds > 0 {
				b.WriteString(", ClientIP affinity ")
				writeInt(b, fe.AffinityTimeoutSeconds)
				b.WriteString(" s")
			}
			b.WriteString(" [chain " + fe.Chain)
			if fe.Map != "" {
				b.WriteString(", @" + fe.Map + " from ")
				writeInt(b, int(fe.FirstKey))
			}
			b.WriteString("]\n")
			if slices.Equal(fe.Endpoints, prev) {
				b.WriteString("        (same endpoints as above)\n")
				break
			}
			for _, e := range fe.Endpoints {
				writeEndpoint(b, e)
			}
			prev = fe.Endpoints
		case StatusNoEndpoints:
			how := "ICMP port unreachable"
			if sp.Protocol == strings.ToUpper(nft.TCP.String()) {
				how = "TCP reset"
			}
			fmt.Fprintf(b, "no endpoints: new connections rejected (%s)\n", how)
		case StatusDrop:
			b.WriteString("dropped (traffic policy Local, no local endpoint)\n")
		default:
			fmt.Fprintf(b, "%s\n", fe.Status)
		}
	}
	if a := sp.API; a != nil {
		fmt.Fprintf(b, "  API: %d endpoint(s), sessionAffinity %s", a.Endpoints, a.SessionAffinity)
		if a.AffinityTimeoutSeconds > 0 {
			fmt.Fprintf(b, " (%d s)", a.AffinityTimeoutSeconds)
		}
		fmt.Fprintf(b, ", traffic policy external %s internal %s", a.ExternalTrafficPolicy, a.InternalTrafficPolicy)
		if a.NodePort != 0 {
			fmt.Fprintf(b, ", nodePort %d", a.NodePort)
		}
		if len(a.ExternalIPs) > 0 {
			fmt.Fprintf(b, ", externalIPs %s", strings.Join(a.ExternalIPs, ","))
		}
		if len(a.LoadBalancerIPs) > 0 {
			fmt.Fprintf(b, ", loadBalancerIPs %s", strings.Join(a.LoadBalancerIPs, ","))
		}
		b.WriteByte('\n')
	}
	for _, s := range sp.Drift {
		fmt.Fprintf(b, "  DRIFT: %s\n", s)
	}
	for _, s := range sp.Problems {
		fmt.Fprintf(b, "  PROBLEM: %s\n", s)
	}
}

// frontendAddr renders a frontend's destination: 10.96.0.10:80,
// [fd96::10]:80, or *:30080 for a node port.
func frontendAddr(fe Frontend) string {
	port := strconv.Itoa(int(fe.Port))
	switch {
	case fe.Kind == KindNodePort:
		return "*:" + port
	case strings.IndexByte(fe.Address, ':') >= 0:
		if a, err := netip.ParseAddr(fe.Address); err == nil {
			return netip.AddrPortFrom(a, fe.Port).String()
		}
	}
	return fe.Address + ":" + port
}

// writePadded writes s and spaces up to width, as fmt's %-<width>s.
func writePadded(b *bufio.Writer, s string, width int) {
	b.WriteString(s)
	for n := utf8.RuneCountInString(s); n < width; n++ {
		b.WriteByte(' ')
	}
}

// writeInt writes n in decimal.
func writeInt(b *bufio.Writer, n int) {
	b.Write(strconv.AppendInt(b.AvailableBuffer(), int64(n), 10))
}

// writeEndpoint writes an endpoint's line: Endpoint.String, without its
// parsing and formatting for the common IPv4 address (100,000 lines at
// 10k Services × 10 endpoints).
func writeEndpoint(b *bufio.Writer, e Endpoint) {
	b.WriteString("        ")
	if strings.IndexByte(e.Address, ':') < 0 {
		b.WriteString(e.Address)
		b.WriteByte(':')
		writeInt(b, int(e.Port))
	} else {
		b.WriteString(e.String())
	}
	b.WriteByte('\n')
}
