package netkit

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// outcomeTB records what RequireRoot decided instead of acting on it.
type outcomeTB struct {
	testing.TB
	fatal, skip string
}

func (o *outcomeTB) Fatalf(f string, a ...any) { o.fatal = fmt.Sprintf(f, a...) }
func (o *outcomeTB) Skipf(f string, a ...any)  { o.skip = fmt.Sprintf(f, a...) }

func TestRequireRootNeverPassesSilently(t *testing.T) {
	defer func(f func() int) { euid = f }(euid)
	for _, tc := range []struct {
		uid      int
		ci, req  string
		want     string // "run", "skip" or "fail"
		logEntry string
	}{
		{uid: 0, want: "run", logEntry: "ran"},
		{uid: 0, ci: "true", want: "run", logEntry: "ran"},
		{uid: 1000, want: "skip", logEntry: "skipped"},
		{uid: 1000, ci: "false", want: "skip", logEntry: "skipped"},
		{uid: 1000, ci: "true", want: "fail", logEntry: "failed"},
		{uid: 1000, req: "1", want: "fail", logEntry: "failed"},
	} {
		name := fmt.Sprintf("uid=%d,CI=%s,%s=%s", tc.uid, tc.ci, EnvRequireRoot, tc.req)
		t.Run(name, func(t *testing.T) {
			log := filepath.Join(t.TempDir(), "kernel-tests")
			t.Setenv("CI", tc.ci)
			t.Setenv(EnvRequireRoot, tc.req)
			t.Setenv(EnvKernelTestLog, log)
			euid = func() int { return tc.uid }
			o := &outcomeTB{TB: t}
			RequireRoot(o)
			got := "run"
			switch {
			case o.fatal != "":
				got = "fail"
			case o.skip != "":
				got = "skip"
			}
			if got != tc.want {
				t.Errorf("RequireRoot: %s (fatal %q, skip %q), want %s", got, o.fatal, o.skip, tc.want)
			}
			b, err := os.ReadFile(log)
			if err != nil || strings.TrimSpace(string(b)) != tc.logEntry+" "+t.Name() {
				t.Errorf("kernel test log %q (%v), want %q", b, err, tc.logEntry+" "+t.Name())
			}
		})
	}
}
