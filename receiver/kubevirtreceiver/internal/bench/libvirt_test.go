package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/testenv"
)

// guestCount is how many guests the "100 guests" daemon runs: BENCH_GUESTS, default
// 100. Each TCG guest idling in SeaBIOS costs ~40 MiB resident and little CPU (the
// benchmark reports both), so 100 fit a 2-core, 24 GiB machine.
func guestCount() int {
	if n, err := strconv.Atoi(os.Getenv("BENCH_GUESTS")); err == nil && n > 0 {
		return n
	}
	return 100
}

// guestDaemon is a launcher-like libvirtd running guests named default_vm-NNNN, all
// TCG ("qemu"): TCG works everywhere, and the domain type does not change what
// detection costs.
type guestDaemon struct {
	lv    *testenv.Libvirtd
	names []string
}

// startGuestDaemon starts a libvirtd with n guests, once per process and n.
func startGuestDaemon(n int) (*guestDaemon, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	lv, err := testenv.StartLibvirtd(ctx, testenv.LibvirtdOptions{CapsCacheDir: testenv.DefaultCapsCacheDir()})
	if errors.Is(err, testenv.ErrLibvirtdNotFound) {
		return nil, skipError{err}
	}
	if err != nil {
		return nil, err
	}
	atExit(lv.Stop)
	d := &guestDaemon{lv: lv}
	for i := range n {
		d.names = append(d.names, fmt.Sprintf("default_vm-%04d", i))
	}
	// A few at a time: libvirtd serialises much of a start anyway, and each QEMU
	// spends its first ~0.3 s of CPU booting into SeaBIOS.
	err = parallel(len(d.names), 4, func(i int) error { return lv.StartGuest(ctx, d.names[i], "qemu") })
	return d, err
}

// guestPIDs returns the QEMU pids of the daemon's guests.
func (d *guestDaemon) guestPIDs() ([]int, error) {
	pids := make([]int, 0, len(d.names))
	for _, name := range d.names {
		pid, err := d.lv.GuestPID(name)
		if err != nil {
			return nil, err
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// guestUsage sums the CPU time and resident memory of the guests' QEMU processes.
func (d *guestDaemon) guestUsage() (cpu time.Duration, rss int64, err error) {
	pids, err := d.guestPIDs()
	if err != nil {
		return 0, 0, err
	}
	for _, pid := range pids {
		c, err := cpuTimeTicks(pid)
		if err != nil {
			return 0, 0, err
		}
		r, err := rssBytes(pid)
		if err != nil {
			return 0, 0, err
		}
		cpu += c
		rss += r
	}
	return cpu, rss, nil
}

// testDriverNode writes a libvirt test-driver node with the n running domains of VMI
// set (see setDomain) into dir and returns its URI. Their types cycle through kvm,
// qemu and hyperv. The test driver lives in the client's process: lookups make no
// RPC, but each new connection parses the whole file.
func testDriverNode(dir, set string, n int) (string, error) {
	var b strings.Builder
	b.WriteString("<node>\n")
	types := []string{"kvm", "qemu", "hyperv"}
	for i := range n {
		fmt.Fprintf(&b, "<domain type='%s'><name>%s</name><memory>65536</memory>"+
			"<os><type arch='x86_64'>hvm</type></os></domain>\n", types[i%len(types)], setDomain(set, i))
	}
	b.WriteString("</node>\n")
	path := filepath.Join(dir, fmt.Sprintf("%s-%d.xml", set, n))
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return "", err
	}
	return "test://" + path, nil
}

// tempDir makes a directory removed when the benchmark binary finishes.
func tempDir() (string, error) {
	dir, err := os.MkdirTemp("", "otelcol-kubevirt-bench-")
	if err != nil {
		return "", err
	}
	atExit(func() error { return os.RemoveAll(dir) })
	return dir, nil
}

// parallel calls fn(0..n-1) from at most limit goroutines and returns the first error;
// after an error the calls not yet started are skipped.
func parallel(n, limit int, fn func(i int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		next  int
		first error
	)
	// claim hands out the next index, or false when done or failed.
	claim := func() (int, bool) {
		mu.Lock()
		defer mu.Unlock()
		i := next
		next++
		return i, i < n && first == nil
	}
	for range min(limit, n) {
		wg.Go(func() {
			for i, ok := claim(); ok; i, ok = claim() {
				if err := fn(i); err != nil {
					mu.Lock()
					first = cmp.Or(first, err)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return first
}
