# nftproxy — common tasks. Everything that touches the network needs root
# and happens inside network namespaces the tests create (never the host's).
#
#   make build      build ./bin/nftproxy
#   make test       unit + kernel tests (go test ./... minus e2e), then the
#                   e2e lab suite (real apiserver, 3 nodes, routed + vxlan).
#                   The first run builds etcd/kube-apiserver/... (~6 min on
#                   2 cores) into ~/.cache/nftproxy-lab; later runs reuse them.
#   make demo       start a 2-node lab with nftproxy, send traffic, print a
#                   ruleset; the lab stays up
#   make demo-down  stop the demo lab (processes by PID, namespaces deleted)
#   make bench      benchmarks of the rule builder and kernel apply
#   make conformance       real-kubelet cluster (2 nodes: kubelet, containerd,
#                   CNI in lab namespaces), nftproxy deployed with kubectl
#                   apply -k, CoreDNS, then upstream's e2e.test focused on
#                   [sig-network] [Conformance]; summary table and JUnit in
#                   the results directory it names. CONFORMANCE_FOCUS,
#                   CONFORMANCE_SKIP, CONFORMANCE_ARGS (e.g. -keep) adjust it.
#   make conformance-down  stop a kept or crashed conformance cluster

GO ?= go
BIN ?= bin
E2E_TIMEOUT ?= 60m

CONFORMANCE_FOCUS ?= \[sig-network\].*\[Conformance\]
CONFORMANCE_SKIP ?=
CONFORMANCE_ARGS ?=

.PHONY: build test unit e2e demo demo-down bench conformance conformance-down

build:
	$(GO) build -o $(BIN)/nftproxy .

test: unit e2e

# Every package of the project module except the e2e suite, which gets
# its own longer timeout below.
unit:
	$(GO) test $$($(GO) list ./... | grep -v '/e2e$$')

e2e:
	$(GO) test -count=1 -timeout $(E2E_TIMEOUT) -v ./e2e

demo:
	$(GO) run ./e2e/demo

demo-down:
	$(GO) run ./e2e/demo down

bench:
	$(GO) test -run '^$$' -bench . -benchmem $$($(GO) list ./... | grep -v '/e2e')

conformance:
	$(GO) run ./e2e/conformance -focus '$(CONFORMANCE_FOCUS)' -skip '$(CONFORMANCE_SKIP)' $(CONFORMANCE_ARGS)

conformance-down:
	$(GO) run ./e2e/conformance down
