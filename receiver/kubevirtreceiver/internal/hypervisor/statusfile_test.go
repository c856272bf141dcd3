package hypervisor

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// statusEdits turn the real status file libvirt-status-kvm into the cases the fast path
// must get right: a <domain> that libvirtxml or encoding/xml rejects (the error, its
// line included, must be the full decode's), and documents it must leave to the full
// decode because something around the <domain> changes how it is read.
type statusEdit struct {
	name     string
	old, new string
	edit     func(string) string // instead of old and new
	fast     bool                // the fast path answers, rather than the full decode
}

var statusEdits = []statusEdit{
	{name: "unchanged", fast: true},
	{name: "comment after domain", old: "</domain>\n", new: "</domain><!-- x -->\n", fast: true},
	{name: "unicode in prefix", old: "pid='24364'", new: "pid='24364' note='débâcle 😀'", fast: true},
	{name: "no space between attributes", old: "type='unix'/>", new: "type='unix'x='1'/>", fast: true},
	{name: "garbage after root", old: "</domstatus>", new: "</domstatus>\n<x>&bad;", fast: true},
	{name: "libvirtxml rejects a value", old: "<vcpu placement='static'>1</vcpu>", new: "<vcpu placement='static'>x</vcpu>", fast: true},
	{name: "libvirtxml rejects a device", old: "<controller type='pci'", new: "<controller", fast: true},
	{name: "syntax error in domain", old: "    </devices>\n  </domain>", new: "    </device>\n  </domain>", fast: true},
	{name: "domain unclosed", old: "  </domain>\n</domstatus>\n", new: "", fast: true},
	{name: "domain closed by root", old: "  </domain>\n", new: "", fast: true},
	{name: "bad domain start tag", old: "<domain type='kvm' id='2'>", new: "<domain type='kvm' id=2>", fast: true},
	{name: "empty domain", edit: func(doc string) string {
		before, _, _ := strings.Cut(doc, "<domain ")
		return before + "<domain type='qemu'/></domstatus>"
	}, fast: true},
	{name: "namespace declared on root", old: "<domstatus ", new: "<domstatus xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0' "},
	{name: "default namespace on root", old: "<domstatus ", new: "<domstatus xmlns='urn:x' "},
	{name: "prefixed element before domain", old: "<chardevStdioLogd/>", new: "<x:chardevStdioLogd/>"},
	{name: "second domain", old: "</domain>\n", new: "</domain><domain type='qemu'/>\n"},
	{name: "element after domain", old: "</domain>\n", new: "</domain><x/>\n"},
	{name: "root unclosed", old: "</domstatus>", new: ""},
	{name: "root closed wrongly", old: "</domstatus>", new: "</domstatu>"},
	{name: "carriage returns", old: "\n", new: "\r\n"},
	{name: "entity in prefix", old: "pid='24364'", new: "pid='&#50;'"},
	{name: "CDATA in prefix", old: "<agentTimeout>-2", new: "<agentTimeout><![CDATA[-2]]>"},
	{name: "mismatched end in prefix", old: "</vcpus>", new: "</vcpu>"},
	{name: "invalid UTF-8 in prefix", old: "pid='24364'", new: "pid='24\xff364'"},
	{name: "control character in prefix", old: "pid='24364'", new: "pid='24\x01364'"},
	{name: "comment with -- in prefix", old: "<qemuCaps>", new: "<qemuCaps><!-- a -- b -->"},
	{name: "XML declaration", old: "<!--\nWARNING", new: "<?xml version='1.0'?><!--\nWARNING"},
	{name: "nested deeper than the scanner", old: "<agentTimeout>", new: strings.Repeat("<a>", maxScanDepth+1) + strings.Repeat("</a>", maxScanDepth+1) + "<agentTimeout>"},
}

func (e statusEdit) apply(doc string) string {
	if e.edit != nil {
		return e.edit(doc)
	}
	return strings.ReplaceAll(doc, e.old, e.new)
}

func TestDetectStatusFileAgreesWithFullDecode(t *testing.T) {
	base := corpusSeed(t, "libvirt-status-kvm")
	for _, e := range statusEdits {
		t.Run(e.name, func(t *testing.T) {
			if e.old != "" && !strings.Contains(base, e.old) {
				t.Fatalf("libvirt-status-kvm has no %q", e.old)
			}
			doc := e.apply(base)
			_, fast, _ := detectStatusFile(doc)
			if fast != e.fast {
				t.Errorf("fast path answered = %v, want %v", fast, e.fast)
			}
			assertSameAsFull(t, doc)
		})
	}
}

// TestDetectStatusFileRealFilesTakeFastPath: the status files libvirt wrote (9.0, and
// KubeVirt-shaped) are what the fast path is for.
func TestDetectStatusFileRealFilesTakeFastPath(t *testing.T) {
	for _, seed := range []string{"libvirt-status-kvm", "libvirt-status-tcg", "kubevirt-status-root"} {
		doc := corpusSeed(t, seed)
		det, fast, err := detectStatusFile(doc)
		if !fast || err != nil || det.Type == Unknown {
			t.Errorf("%s: detectStatusFile = %v, fast %v, %v; want its type by the fast path", seed, det, fast, err)
		}
	}
}

// TestDetectStatusFileDepthLimit: encoding/xml refuses to decode deeper than a limit
// counted from the document's root, so the fast path decodes the <domain> inside a
// <domstatus> of its own. A chain of backing stores, which libvirtxml decodes
// recursively, reaches the limit; the two decodes must flip at the same depth.
func TestDetectStatusFileDepthLimit(t *testing.T) {
	doc := func(n int) string {
		return "<domstatus><domain type='kvm'><devices><disk type='file'>" +
			strings.Repeat("<backingStore>", n) + strings.Repeat("</backingStore>", n) +
			"</disk></devices></domain></domstatus>"
	}
	// The smallest depth the full decode refuses.
	lo, hi := 1, 20000
	if _, err := detectFull(doc(hi)); err == nil || !strings.Contains(err.Error(), "exceeded max depth") {
		t.Fatalf("full decode of %d backing stores: %v, want the depth limit", hi, err)
	}
	for lo < hi {
		mid := (lo + hi) / 2
		if _, err := detectFull(doc(mid)); err != nil {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	for n := lo - 1; n <= lo+1; n++ {
		d := doc(n)
		if _, fast, _ := detectStatusFile(d); !fast {
			t.Fatalf("%d backing stores: fast path did not answer", n)
		}
		assertSameAsFull(t, d)
	}
}

// FuzzDetectFastEqualsFull checks that Detect, with its fast path for status files,
// answers exactly as the full decode does: the same detection and the same error.
// Its seeds are FuzzDetect's corpus and statusEdits.
func FuzzDetectFastEqualsFull(f *testing.F) {
	entries, err := os.ReadDir("testdata/fuzz/FuzzDetect")
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range entries {
		f.Add(corpusSeed(f, e.Name()))
	}
	base := corpusSeed(f, "libvirt-status-kvm")
	for _, e := range statusEdits[1:] { // [0] is the seed itself
		f.Add(e.apply(base))
	}
	f.Fuzz(func(t *testing.T, doc string) {
		assertSameAsFull(t, doc)
	})
}

func assertSameAsFull(t *testing.T, doc string) {
	t.Helper()
	got, err := Detect(doc)
	want, wantErr := detectFull(doc)
	if got != want || errString(err) != errString(wantErr) {
		t.Fatalf("Detect(%s)\n = %v, %v\nfull decode = %v, %v", clip(doc), got, err, want, wantErr)
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// clip quotes doc for a message, eliding the middle of a long one.
func clip(doc string) string {
	if len(doc) <= 400 {
		return strconv.Quote(doc)
	}
	return fmt.Sprintf("%q ...%d bytes... %q", doc[:200], len(doc)-400, doc[len(doc)-200:])
}
