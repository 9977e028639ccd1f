package app

import (
	"testing"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// The informers' list pages go through a client without client-go's QPS
// limit; every other call keeps it.
func TestListPagesClientIsNotThrottled(t *testing.T) {
	client, pages, err := newClients(&rest.Config{Host: "https://192.0.2.1:6443"}, "nftproxy-test")
	if err != nil {
		t.Fatal(err)
	}
	limiter := func(c kubernetes.Interface) bool {
		return c.CoreV1().RESTClient().(*rest.RESTClient).GetRateLimiter() != nil
	}
	if !limiter(client) {
		t.Error("the API client has no rate limiter")
	}
	if limiter(pages) {
		t.Error("the list pages' client is rate limited")
	}
}
