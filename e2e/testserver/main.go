// Command testserver is the backend the e2e lab runs in every test pod.
//
// It answers with its pod name over TCP, UDP and HTTP so a client can tell
// which endpoint a Service sent it to; with -echo-source it also reports
// the client address it saw, which is how the e2e tests check source
// preservation and masquerade. Every answer is one line:
//
//	<name>            (without -echo-source)
//	<name> <ip:port>  (with -echo-source; the client as seen by the pod)
//
// TCP: the line is written on accept and the connection closed.
// UDP: every datagram is answered with the line (no newline).
// HTTP: any request gets the line as a text/plain 200.
//
// SCTP is not served: the kernels this runs on have no SCTP sockets.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	name := flag.String("name", "", "pod name to answer with (default: hostname)")
	port := flag.Int("port", 8080, "TCP and UDP port")
	httpPort := flag.Int("http-port", 8081, "HTTP port (0 disables)")
	echo := flag.Bool("echo-source", false, "append the client's address as seen by the server")
	flag.Parse()
	if *name == "" {
		h, err := os.Hostname()
		if err != nil {
			log.Fatalf("testserver: no -name and no hostname: %v", err)
		}
		*name = h
	}
	s := &server{name: *name, echo: *echo}
	// "[::]" sockets accept IPv4 too (v4-mapped), so one listener per
	// protocol serves both families of a dual-stack pod.
	tl, err := net.Listen("tcp", fmt.Sprintf("[::]:%d", *port))
	if err != nil {
		log.Fatalf("testserver: listen tcp: %v", err)
	}
	uc, err := net.ListenPacket("udp", fmt.Sprintf("[::]:%d", *port))
	if err != nil {
		log.Fatalf("testserver: listen udp: %v", err)
	}
	go s.serveTCP(tl)
	go s.serveUDP(uc)
	if *httpPort != 0 {
		hl, err := net.Listen("tcp", fmt.Sprintf("[::]:%d", *httpPort))
		if err != nil {
			log.Fatalf("testserver: listen http: %v", err)
		}
		go func() { log.Fatal(http.Serve(hl, s)) }()
	}
	log.Printf("testserver %s: tcp+udp :%d http :%d echo-source=%v", *name, *port, *httpPort, *echo)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}

type server struct {
	name string
	echo bool
}

// line is the answer for a client at remote.
func (s *server) line(remote string) string {
	if !s.echo {
		return s.name
	}
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		// Report IPv4 clients of the dual-stack socket as plain IPv4.
		remote = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
	}
	return s.name + " " + remote
}

func (s *server) serveTCP(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			log.Fatalf("testserver: accept: %v", err)
		}
		go func() {
			defer c.Close()
			fmt.Fprintln(c, s.line(c.RemoteAddr().String()))
		}()
	}
}

func (s *server) serveUDP(c net.PacketConn) {
	buf := make([]byte, 2048)
	for {
		_, addr, err := c.ReadFrom(buf)
		if err != nil {
			log.Fatalf("testserver: udp read: %v", err)
		}
		if _, err := c.WriteTo([]byte(s.line(addr.String())), addr); err != nil {
			log.Printf("testserver: udp reply to %v: %v", addr, err)
		}
	}
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	fmt.Fprintln(w, s.line(r.RemoteAddr))
}
