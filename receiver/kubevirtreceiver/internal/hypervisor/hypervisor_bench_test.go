package hypervisor

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// BenchmarkDetect measures Detect alone on documents from the seed corpus: a live
// domain XML as libvirt 9.0's virDomainGetXMLDesc returns it (the uri source and the
// launcher's socket fallback), and status files (the launcher source's first choice):
// libvirt's ~9.8 KB one of the lab's minimal guest, a KubeVirt-shaped domain in a root
// launcher's 11.6 KB one, and the ~21 KB one libvirt 9.0 wrote for a KubeVirt-shaped
// q35 guest with three disks, two NICs and the usual channels (kubevirt-status-large);
// and what KubeVirt v1.7.0's own virt-launcher made in the lab's launcher pod: the
// 7.1 KB live XML and the 17.1 KB status file of a KVM guest.
func BenchmarkDetect(b *testing.B) {
	for _, seed := range []struct {
		name string
		want Type
	}{
		{"libvirt-live-kvm", KVM},
		{"libvirt-status-kvm", KVM},
		{"kubevirt-kvm", KVM},
		{"kubevirt-status-root", KVM},
		{"kubevirt-status-large", QEMUTCG},
		{"virt-launcher-live-kvm", KVM},
		{"virt-launcher-status-kvm", KVM},
	} {
		doc := corpusSeed(b, seed.name)
		b.Run(seed.name, func(b *testing.B) {
			b.SetBytes(int64(len(doc)))
			b.ReportAllocs()
			for b.Loop() {
				if d, err := Detect(doc); err != nil || d.Type != seed.want {
					b.Fatalf("Detect = %v, %v; want %s", d, err, seed.want)
				}
			}
		})
	}
}

// corpusSeed reads a string seed of FuzzDetect's corpus.
func corpusSeed(b testing.TB, name string) string {
	data, err := os.ReadFile("testdata/fuzz/FuzzDetect/" + name)
	if err != nil {
		b.Fatal(err)
	}
	_, lit, _ := strings.Cut(strings.TrimSpace(string(data)), "\n")
	s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lit, "string("), ")"))
	if err != nil {
		b.Fatalf("%s: %v", name, err)
	}
	return s
}
