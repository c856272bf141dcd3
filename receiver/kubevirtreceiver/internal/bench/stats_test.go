package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv/percentile"
)

// latencies collects one duration per operation and reports percentiles, which a
// mean (ns/op) hides: the targets are on p99.
type latencies []time.Duration

// percentile returns the q-quantile (0 < q <= 1) by the nearest-rank method.
func (l latencies) percentile(q float64) time.Duration { return percentile.Of(l, q) }

// report adds <prefix>p50-<unit>, <prefix>p99-<unit> and <prefix>max-<unit> to b's
// results, in unit (time.Microsecond or time.Millisecond).
func (l latencies) report(b *testing.B, prefix string, unit time.Duration) {
	name := map[time.Duration]string{time.Microsecond: "us", time.Millisecond: "ms"}[unit]
	for _, p := range []struct {
		label string
		q     float64
	}{{"p50", 0.50}, {"p99", 0.99}, {"max", 1}} {
		b.ReportMetric(float64(l.percentile(p.q))/float64(unit), prefix+p.label+"-"+name)
	}
}

// cpuTime returns the CPU time (user and system, all threads) process pid has used so
// far, from the scheduler's per-thread nanosecond counters: /proc/<pid>/stat counts
// in 10 ms ticks, too coarse for a process that should use ~1 ms a second.
// Threads that exit between two readings take their time with them; Go runtimes
// rarely retire threads, and cpuTimeTicks is there to cross-check.
func cpuTime(pid int) (time.Duration, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, err
	}
	var total time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "task", t.Name(), "schedstat"))
		if err != nil {
			continue // the thread exited meanwhile
		}
		ns, err := strconv.ParseInt(strings.Fields(string(b))[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("schedstat of %d/%s: %w", pid, t.Name(), err)
		}
		total += time.Duration(ns)
	}
	return total, nil
}

// cpuTimeTicks returns utime+stime of process pid from /proc/<pid>/stat, which counts
// exited threads too, at clock-tick (10 ms) resolution.
func cpuTimeTicks(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may contain spaces; fields after it are plain.
	rest := string(b[strings.LastIndexByte(string(b), ')')+2:])
	f := strings.Fields(rest)
	// utime and stime are fields 14 and 15 of the whole line, 12 and 13 after ')'.
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parsing /proc/%d/stat", pid)
	}
	const ticksPerSecond = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticksPerSecond, nil
}

// rssBytes returns the resident set size of process pid.
func rssBytes(pid int) (int64, error) {
	status, err := procStatus(pid)
	if err != nil {
		return 0, err
	}
	rss, ok := status["VmRSS"]
	if !ok {
		return 0, fmt.Errorf("no VmRSS for %d", pid)
	}
	return rss, nil
}

// procStatus returns the kB fields of /proc/<pid>/status (VmRSS, RssAnon, RssFile,
// ...), in bytes.
func procStatus(pid int) (map[string]int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		name, v, ok := strings.Cut(line, ":")
		v, isKB := strings.CutSuffix(strings.TrimSpace(v), " kB")
		if !ok || !isKB {
			continue
		}
		kb, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("/proc/%d/status: %s: %w", pid, name, err)
		}
		out[name] = kb * 1024
	}
	return out, nil
}
