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
#   make fault-scale  the fault suite's scale scenario at the issue's size
#                   (50,000 Services, a minute of churn; ~7 min, ~3 GB for
#                   nftproxy); make test runs it with 2,000 Services
#   make fuzz       each fuzz target for FUZZTIME (make test: 10 s each)
#   make conformance       real-kubelet cluster (2 nodes: kubelet, containerd,
#                   CNI in lab namespaces), nftproxy deployed with kubectl
#                   apply -k, CoreDNS, then upstream's e2e.test focused on
#                   [sig-network] [Conformance]; summary table and JUnit in
#                   the results directory it names. CONFORMANCE_FOCUS,
#                   CONFORMANCE_SKIP, CONFORMANCE_ARGS (e.g. -keep) adjust it.
#                   CONFORMANCE_PROXY=kube-proxy: upstream kube-proxy
#                   (nftables mode) as the DaemonSet instead (differential);
#                   CONFORMANCE_VIA=sonobuoy: through sonobuoy run/retrieve/
#                   results with locally built sonobuoy and conformance images.
#   make conformance-down  stop a kept or crashed conformance cluster
#   make conformance-build  only build what make conformance needs (same
#                   CONFORMANCE_PROXY/CONFORMANCE_VIA), no cluster: fills
#                   the caches, e.g. ahead of a first run or in CI
#   make bench-compare  nftproxy vs upstream kube-proxy (nftables, iptables)
#                   as real processes against a real apiserver: control
#                   plane at 1k and 10k Services, data plane at 1, 1k, 10k
#                   and 30k (BENCH_COMPARE_ARGS, e.g. "-big -runs 3";
#                   `go run ./e2e/benchcompare -h` lists the flags); writes
#                   BENCH_OUT (JSON) and its SVG plots
#   make bench-readme  regenerates README.md's performance table and
#                   docs/performance.md's results from BENCH_OUT

GO ?= go
BIN ?= bin
E2E_TIMEOUT ?= 60m

CONFORMANCE_FOCUS ?= \[sig-network\].*\[Conformance\]
CONFORMANCE_SKIP ?=
CONFORMANCE_ARGS ?=
BENCH_OUT ?= docs/bench/bench-compare.json
CONFORMANCE_PROXY ?= nftproxy
CONFORMANCE_VIA ?= e2e

.PHONY: build test unit e2e fault-scale demo demo-down bench bench-compare bench-readme conformance conformance-down conformance-build

build:
	$(GO) build -o $(BIN)/nftproxy .

test: unit fuzz-short e2e

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

fault-scale:
	NFTPROXY_FAULT_SCALE=1 $(GO) test -count=1 -timeout 120m -v -run '^TestFaultScale$$' ./e2e

demo:
	$(GO) run ./e2e/demo

demo-down:
	$(GO) run ./e2e/demo down

# Fuzz targets, one `go test -fuzz` run each (package:target). Their seeds
# and testdata/fuzz/<target>/ inputs also run in every plain `go test`; a
# failing input found here is written there. Each run starts from those
# (a fresh corpus cache: the one in GOCACHE grows with every run, and a
# short run would spend its time re-measuring it instead of fuzzing), and
# minimizes an input in at most 100 runs.
FUZZTIME ?= 20s
FUZZ_TARGETS = proxier/model:FuzzServicePorts nftrules:FuzzBuilderIncremental nftrules:FuzzDiff nftrules:FuzzParseRule

.PHONY: fuzz fuzz-short

fuzz:
	@rc=0; cache=$$(mktemp -d); for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t#*:} for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 100x ./$${t%%:*} \
			-args -test.fuzzcachedir=$$cache/$${t#*:} || rc=1; \
	done; rm -rf $$cache; exit $$rc

fuzz-short:
	@$(MAKE) --no-print-directory fuzz FUZZTIME=10s

bench:
	$(GO) test -run '^$$' -bench . -benchmem $$($(GO) list ./... | grep -v '/e2e')

conformance:
	$(GO) run ./e2e/conformance -focus '$(CONFORMANCE_FOCUS)' -skip '$(CONFORMANCE_SKIP)' -proxy $(CONFORMANCE_PROXY) -via $(CONFORMANCE_VIA) $(CONFORMANCE_ARGS)

conformance-down:
	$(GO) run ./e2e/conformance down

conformance-build:
	$(GO) run ./e2e/conformance -proxy $(CONFORMANCE_PROXY) -via $(CONFORMANCE_VIA) build

bench-compare:
	mkdir -p $(dir $(BENCH_OUT))
	$(GO) run ./e2e/benchcompare -out $(BENCH_OUT) $(BENCH_COMPARE_ARGS)

bench-readme:
	$(GO) run ./e2e/benchcompare -render $(BENCH_OUT)
