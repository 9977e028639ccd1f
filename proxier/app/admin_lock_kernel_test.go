package app

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nftproxy/nftproxy/e2e/netkit"
)

// startCLI starts nftproxy with args inside ns as a daemon (stopped when
// the test ends) and returns it with the path of its log.
func startCLI(t *testing.T, ns *netkit.NS, name string, args ...string) (*netkit.Proc, string) {
	t.Helper()
	// --state-dir: never the host's /run/nftproxy, as runCLI.
	raw, err := json.Marshal(append([]string{"--hostname-override=node", "--state-dir=" + t.TempDir()}, args...))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(helperEnv, string(raw)) // read by the child at its start
	logPath := filepath.Join(t.TempDir(), name+".log")
	p, err := ns.Start(logPath, os.Args[0], "-test.run=^TestHelperNftproxyMain$")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(5 * time.Second) })
	return p, logPath
}

// waitLog waits until the log at path contains want and returns it.
func waitLog(t *testing.T, path, want string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), want) {
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not say %q within %v:\n%s", filepath.Base(path), want, timeout, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestKernelOneInstancePerNamespace runs two proxies and --cleanup in one
// network namespace: the second proxy waits, saying for whom, and takes
// over when the first exits; --cleanup refuses while a proxy runs, unless
// --force, and works once none does. The proxies' API server does not
// answer, so they hold the lock without ever programming anything.
func TestKernelOneInstancePerNamespace(t *testing.T) {
	n := newCLINode(t, 0)
	n.program(t, cliState())
	args := []string{"--master=http://127.0.0.1:1", "--healthz-bind-address=", "--metrics-bind-address="}
	const owns, waits = "This instance owns the nftables tables", "Waiting: another instance owns"

	first, firstLog := startCLI(t, n.node, "first", args...)
	waitLog(t, firstLog, owns, 10*time.Second)
	second, secondLog := startCLI(t, n.node, "second", args...)
	log := waitLog(t, secondLog, waits, 10*time.Second)
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, waits) {
			t.Logf("the second instance: %s", l)
		}
	}
	if holder := fmt.Sprintf(`holder="nftproxy (pid %d, node node, running since `, first.PID); !strings.Contains(log, holder) {
		t.Errorf("the waiting instance does not name the holder (%s):\n%s", holder, log)
	}
	time.Sleep(time.Second)
	if b, _ := os.ReadFile(secondLog); strings.Contains(string(b), owns) || second.Exited() {
		t.Fatalf("the second instance did not wait:\n%s", b)
	}

	tables := func() int {
		live, err := n.rec.ReadLive()
		if err != nil {
			t.Fatal(err)
		}
		return len(live.Tables)
	}
	out, errOut, err := runCLI(t, n.node, "--cleanup")
	want := fmt.Sprintf("cleanup refused: nftproxy (pid %d, node node, running since ", first.PID)
	t.Logf("--cleanup: %v: %s", err, lastLine(errOut))
	if err == nil || !strings.Contains(errOut, want) || !strings.Contains(errOut, "--force") || tables() != 2 {
		t.Fatalf("--cleanup while a proxy runs: %v, %d tables left, want refused with %q and --force named\nstdout:\n%s\nstderr:\n%s",
			err, tables(), want, out, errOut)
	}
	out = mustRunCLI(t, n.node, "--cleanup", "--force")
	if !strings.Contains(out, fmt.Sprintf("warning: nftproxy (pid %d", first.PID)) || !strings.Contains(out, "deleted table ip nftproxy") || tables() != 0 {
		t.Errorf("--cleanup --force: %d tables left; output:\n%s", tables(), out)
	}

	if err := first.Stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	exited := time.Now()
	waitLog(t, secondLog, owns, time.Second)
	t.Logf("the second instance took over %v after the first exited", time.Since(exited).Round(time.Millisecond))
	if err := second.Stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	n.program(t, cliState())
	if out := mustRunCLI(t, n.node, "--cleanup"); !strings.Contains(out, "deleted table ip nftproxy") || strings.Contains(out, "warning") {
		t.Errorf("--cleanup with no proxy running:\n%s", out)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
