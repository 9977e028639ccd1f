// Command sonobuoy is upstream's sonobuoy CLI (v0.57.3, pinned in this
// module's go.mod), built from its module because its version list is not
// served (so `go install ...@v0.57.3` cannot resolve it). The same binary
// is the aggregator in the sonobuoy image (`sonobuoy aggregator`) and the
// worker sidecar of each plugin (`sonobuoy worker`). Used by
// `make conformance CONFORMANCE_VIA=sonobuoy` (e2e/conformance).
package main

import (
	"os"

	"github.com/vmware-tanzu/sonobuoy/cmd/sonobuoy/app"
)

func main() {
	if err := app.NewSonobuoyCommand().Execute(); err != nil {
		os.Exit(1)
	}
}
