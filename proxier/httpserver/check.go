package httpserver

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"time"
)

// ClosesIdle sends one keep-alive request to addr, reads the answer and
// checks that the server closes the connection within wait. Tests of the
// servers built with New use it (set IdleTimeout short first).
func ClosesIdle(addr string, wait time.Duration) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return err
	}
	c.SetReadDeadline(time.Now().Add(wait))
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if _, err := r.ReadByte(); !errors.Is(err, io.EOF) {
		return errors.New("idle keep-alive connection not closed by the server: " + errString(err))
	}
	return nil
}

func errString(err error) string {
	if err == nil {
		return "more data"
	}
	return err.Error()
}
