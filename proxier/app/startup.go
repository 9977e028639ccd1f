package app

import (
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/nftproxy/nftproxy/informers"
	"github.com/nftproxy/nftproxy/proxier"
)

// initDone is when the package's variables were initialized: after the
// init of every package it imports (client-go's API schemes among them).
var initDone = time.Now()

// startup is the timeline of a start up to the first rules in the kernel,
// logged once with the first successful sync: at 10,000 Services that
// takes seconds, and which step takes them (the initial lists, our
// handling of them, the first sync's Build, Diff, encoding or commit) is
// what an operator or a benchmark needs to know. Every step is logged as
// the time from the process's start (exec).
type startup struct {
	exec  time.Time
	steps []startStep
	inf   *informers.Informers
	done  bool
}

type startStep struct {
	name string
	at   time.Time
}

func newStartup() *startup { return &startup{exec: processStart()} }

// mark records that step is done now.
func (s *startup) mark(step string) { s.steps = append(s.steps, startStep{step, time.Now()}) }

// synced logs the timeline at the first successful sync; later syncs and
// failed ones are not part of it. It runs on the proxier's goroutine,
// which is run's (Proxier.Run), after every mark.
func (s *startup) synced(info proxier.SyncInfo) {
	if s.done || info.Err != nil {
		return
	}
	s.done = true
	end := info.Start.Add(info.Duration)
	kv := []any{"total", s.since(end), "init", s.since(initDone)}
	for _, st := range s.steps {
		kv = append(kv, st.name, s.since(st.at))
	}
	if s.inf != nil {
		for _, t := range s.inf.SyncTimes() {
			kv = append(kv, t.What+"Listed", s.since(t.Listed), t.What+"Handled", s.since(t.Synced), t.What, t.Objects)
		}
	}
	tm := info.Result.Timing
	kv = append(kv, "syncStart", s.since(info.Start), "build", ms(info.Build), "readKernel", ms(tm.Read),
		"diff", ms(tm.Diff), "encode", ms(tm.Encode), "send", ms(tm.Send), "syncEnd", s.since(end),
		"objects", info.Result.Objects, "messages", info.Result.Messages)
	klog.InfoS("First rules in the kernel; times from the process start, steps in order", kv...)
}

// since is the time from the process's start to t (0 if t is unset).
func (s *startup) since(t time.Time) time.Duration {
	if t.IsZero() {
		return 0
	}
	return ms(t.Sub(s.exec))
}

func ms(d time.Duration) time.Duration { return d.Round(time.Millisecond) }

// processStart is when the kernel started this process (exec), to the
// 10 ms of its clock ticks; the time of package initialization if
// /proc cannot tell.
func processStart() time.Time {
	now := time.Now()
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return initDone
	}
	// The fields after the command name (which may hold spaces and
	// parentheses); starttime is field 22 of the line, 20 of these.
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(fields) < 20 {
		return initDone
	}
	ticks, err := strconv.ParseInt(fields[19], 10, 64)
	var up unix.Timespec
	if err != nil || unix.ClockGettime(unix.CLOCK_BOOTTIME, &up) != nil {
		return initDone
	}
	// /proc counts in USER_HZ, 100 on every Linux architecture's ABI.
	started := time.Duration(ticks) * 10 * time.Millisecond
	return now.Add(-(time.Duration(up.Nano()) - started))
}
