package soak

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"

	"github.com/prometheus/procfs"
)

// runtimeTrace is the GODEBUG setting that makes a collector's Go runtime write, to its
// stderr, every scheduler trace interval the state of each goroutine (schedtrace with
// scheddetail), and a line per garbage collection with the live heap (gctrace). The
// collector has no pprof or zpages extension, and its own telemetry has no goroutine
// count; this needs neither a new component nor a changed binary, only an environment
// variable, and costs a few milliseconds per interval.
const runtimeTrace = "GODEBUG=schedtrace=5000,scheddetail=1,gctrace=1"

// Usage is what a collector process uses at one moment.
type Usage struct {
	// Goroutines is how many goroutines exist (the runtime's own included), from the
	// first complete scheduler trace after the moment; -1 if none was found.
	Goroutines int
	// FDs is the number of open file descriptors, Threads the number of OS threads.
	FDs, Threads int
	// RSS is the resident set size in bytes.
	RSS int64
	// HeapMB is the live heap after the last garbage collection before the moment, in
	// MB as gctrace rounds it; -1 if no collection had run.
	HeapMB int
}

func (u Usage) String() string {
	return fmt.Sprintf("goroutines %d, FDs %d, threads %d, RSS %.1f MiB, live heap %d MB",
		u.Goroutines, u.FDs, u.Threads, float64(u.RSS)/(1<<20), u.HeapMB)
}

// procUsage reads pid's file descriptors, threads and RSS from /proc.
func procUsage(pid int) (Usage, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return Usage{}, err
	}
	fds, err := p.FileDescriptorsLen()
	if err != nil {
		return Usage{}, fmt.Errorf("open files of %d: %w", pid, err)
	}
	st, err := p.Stat()
	if err != nil {
		return Usage{}, fmt.Errorf("stat of %d: %w", pid, err)
	}
	return Usage{Goroutines: -1, HeapMB: -1, FDs: fds, Threads: st.NumThreads, RSS: int64(st.ResidentMemory())}, nil
}

var (
	schedHeader = []byte("SCHED ")
	// "  G12: status=4(chan receive) m=nil lockedm=nil"; the status may carry the
	// runtime's scan bit (0x1000).
	goroutineLine = regexp.MustCompile(`^  G\d+: status=(\d+)\(`)
	// "gc 12 @3.201s 1%: ... ms cpu, 4->4->2 MB, 5 MB goal, ..."
	gcLine = regexp.MustCompile(`^gc \d+ @[0-9.]+s .* (\d+)->(\d+)->(\d+) MB`)
)

// Goroutine states of the runtime (runtime2.go) that are not goroutines at all.
const (
	gIdle   = 0
	gDead   = 6
	gScaned = 0x1000
)

// traceSample is one scheduler trace: where in the log it began, and how many
// goroutines it listed.
type traceSample struct {
	Offset     int64
	Goroutines int
}

// heapSample is one gctrace line: where in the log, and the live heap after it.
type heapSample struct {
	Offset int64
	HeapMB int
}

// parseRuntimeTrace reads the scheduler traces and GC lines of a collector's stderr.
// The last trace is left out: it may still be being written.
func parseRuntimeTrace(r io.Reader) (traces []traceSample, heaps []heapSample, err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var off int64
	cur := -1 // index into traces of the trace being read
	for {
		line, err := br.ReadBytes('\n')
		start := off
		off += int64(len(line))
		if len(line) > 0 {
			line = bytes.TrimRight(line, "\n")
			switch {
			case bytes.HasPrefix(line, schedHeader):
				traces = append(traces, traceSample{Offset: start})
				cur = len(traces) - 1
			case cur >= 0 && goroutineLine.Match(line):
				m := goroutineLine.FindSubmatch(line)
				st, _ := strconv.Atoi(string(m[1]))
				if st &^= gScaned; st != gIdle && st != gDead {
					traces[cur].Goroutines++
				}
			case gcLine.Match(line):
				m := gcLine.FindSubmatch(line)
				mb, _ := strconv.Atoi(string(m[3]))
				heaps = append(heaps, heapSample{Offset: start, HeapMB: mb})
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, err
		}
	}
	if len(traces) > 0 {
		traces = traces[:len(traces)-1]
	}
	return traces, heaps, nil
}

// goroutinesAfter is the goroutine count of the first complete trace that began at or
// after offset, and whether there is one.
func goroutinesAfter(traces []traceSample, offset int64) (int, bool) {
	for _, t := range traces {
		if t.Offset >= offset {
			return t.Goroutines, true
		}
	}
	return 0, false
}

// heapBefore is the live heap of the last GC line before offset, -1 if none.
func heapBefore(heaps []heapSample, offset int64) int {
	mb := -1
	for _, h := range heaps {
		if h.Offset >= offset {
			break
		}
		mb = h.HeapMB
	}
	return mb
}

// maxGoroutines is the most goroutines any trace listed.
func maxGoroutines(traces []traceSample) int {
	most := -1
	for _, t := range traces {
		most = max(most, t.Goroutines)
	}
	return most
}

// readRuntimeTrace parses the runtime trace in the file at path.
func readRuntimeTrace(path string) ([]traceSample, []heapSample, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	return parseRuntimeTrace(f)
}

// fileSize is the size of the file at path, 0 if it cannot be read.
func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}
