package hypervisor

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// BenchmarkDetect measures Detect alone on real libvirt 9.0 documents from the seed
// corpus: a live domain XML as virDomainGetXMLDesc returns it (the uri source and the
// launcher's socket fallback) and a ~9 KB status file (the launcher source's first
// choice), whose <domain> comes after QEMU's capability list.
func BenchmarkDetect(b *testing.B) {
	for _, seed := range []string{"libvirt-live-kvm", "libvirt-status-kvm", "kubevirt-kvm", "kubevirt-status-root"} {
		doc := corpusSeed(b, seed)
		b.Run(seed, func(b *testing.B) { benchDetect(b, Detect, doc) })
	}
}

// BenchmarkDetectFullDecode measures, on the status files, what Detect costs without
// its fast path: decoding all of <domstatus>. A status file the fast path leaves to the
// full decode costs that and the scan before it.
func BenchmarkDetectFullDecode(b *testing.B) {
	for _, seed := range []string{"libvirt-status-kvm", "kubevirt-status-root"} {
		doc := corpusSeed(b, seed)
		b.Run(seed, func(b *testing.B) { benchDetect(b, detectFull, doc) })
	}
}

func benchDetect(b *testing.B, detect func(string) (Detection, error), doc string) {
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		if d, err := detect(doc); err != nil || d.Type != KVM {
			b.Fatalf("Detect = %v, %v", d, err)
		}
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
