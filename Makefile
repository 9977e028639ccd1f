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
#   make bench-compare  nftproxy vs upstream kube-proxy (nftables, iptables)
#                   as real processes against a real apiserver, 1k and 10k
#                   Services (BENCH_COMPARE_ARGS, e.g. "-big -runs 3";
#                   `go run ./e2e/benchcompare -h` lists the flags)

GO ?= go
BIN ?= bin
E2E_TIMEOUT ?= 60m

.PHONY: build test unit e2e demo demo-down bench bench-compare

build:
	$(GO) build -o $(BIN)/nftproxy .

test: unit e2e

# Every package of the project module except the e2e suite, which gets
# its own longer timeout below. Kernel tests record themselves in a log
# (netkit.RequireRoot); the count of those that ran, were skipped or
# failed for want of root is printed at the end.
unit:
	@log=$$(mktemp); \
	NFTPROXY_KERNEL_TEST_LOG=$$log $(GO) test $$($(GO) list ./... | grep -v '/e2e$$'); rc=$$?; \
	echo "kernel tests: $$(grep -c '^ran ' $$log) ran, $$(grep -c '^skipped ' $$log) skipped, $$(grep -c '^failed ' $$log) failed for want of root"; \
	rm -f $$log; exit $$rc

e2e:
	$(GO) test -count=1 -timeout $(E2E_TIMEOUT) -v ./e2e

demo:
	$(GO) run ./e2e/demo

demo-down:
	$(GO) run ./e2e/demo down

bench:
	$(GO) test -run '^$$' -bench . -benchmem $$($(GO) list ./... | grep -v '/e2e')

bench-compare:
	$(GO) run ./e2e/benchcompare $(BENCH_COMPARE_ARGS)
