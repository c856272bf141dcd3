package testenv

// Pinning libvirtd to one CPU, without which libvirt would throw away the
// capability cache of caps.go on most starts.

import (
	"errors"
	"syscall"
	"unsafe"
)

// pinToFirstCPU restricts the calling thread, and so every process it forks,
// to the lowest-numbered CPU it may run on.
//
// Why: libvirt stores the host's CPUID in its QEMU capability cache and
// throws the cache away when the CPUID it reads at startup differs. CPUID
// contents differ between CPUs (APIC IDs, and on some VMs more), so without
// pinning every daemon start re-probes QEMU (~8 s here) with a probability of
// (n-1)/n on n CPUs. libvirt resets each QEMU's affinity to all host CPUs,
// so guests are not pinned by this.
func pinToFirstCPU() error {
	var mask [16]uint64 // 1024 CPUs, glibc's cpu_set_t
	if _, _, e := syscall.RawSyscall(syscall.SYS_SCHED_GETAFFINITY, 0, unsafe.Sizeof(mask), uintptr(unsafe.Pointer(&mask))); e != 0 {
		return e
	}
	for i, w := range mask {
		if w == 0 {
			continue
		}
		var one [len(mask)]uint64
		one[i] = w & -w // lowest set bit
		if _, _, e := syscall.RawSyscall(syscall.SYS_SCHED_SETAFFINITY, 0, unsafe.Sizeof(one), uintptr(unsafe.Pointer(&one))); e != 0 {
			return e
		}
		return nil
	}
	return errors.New("empty CPU affinity mask")
}
