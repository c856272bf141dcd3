package hypervisor

import (
	"strings"
	"testing"
)

func TestDetect(t *testing.T) {
	tests := []struct {
		name    string
		xml     string
		want    Type
		raw     string
		wantErr bool
	}{
		{name: "kvm", xml: `<domain type="kvm"><name>default_my-vm</name></domain>`, want: KVM, raw: "kvm"},
		{name: "qemu is TCG", xml: `<domain type='qemu'><name>a_b</name></domain>`, want: QEMUTCG, raw: "qemu"},
		{name: "hyperv is mshv", xml: `<domain type="hyperv"><name>a_b</name></domain>`, want: MSHV, raw: "hyperv"},
		{name: "unsupported type", xml: `<domain type="xen"/>`, want: Unknown, raw: "xen"},
		{name: "missing type", xml: `<domain><name>x</name></domain>`, want: Unknown},
		{name: "status file wrapper", xml: `<!-- WARNING: THIS IS AN AUTO-GENERATED FILE -->
<domstatus state='running' reason='booted' pid='42'>
  <monitor path='/x/monitor.sock' type='unix'/>
  <qemuCaps><flag name='kvm'/></qemuCaps>
  <domain type='kvm' id='1'><name>default_my-vm</name></domain>
</domstatus>`, want: KVM, raw: "kvm"},
		{name: "status file without domain", xml: `<domstatus state='running'/>`, want: Unknown},
		{name: "invalid xml", xml: `invalid xml`, want: Unknown, wantErr: true},
		{name: "truncated", xml: `<domain type="kvm"><name>`, want: Unknown, wantErr: true},
		{name: "other root", xml: `<capabilities/>`, want: Unknown, wantErr: true},
		{name: "empty", xml: ``, want: Unknown, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Detect(tt.xml)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Detect() error = %v, wantErr %v", err, tt.wantErr)
			}
			if got.Type != tt.want {
				t.Errorf("Detect().Type = %q, want %q", got.Type, tt.want)
			}
			if !tt.wantErr && got.DomainType != tt.raw {
				t.Errorf("Detect().DomainType = %q, want %q", got.DomainType, tt.raw)
			}
		})
	}
}

// FuzzDetect checks that no input panics and that the result is always one of the
// four reported types, Unknown whenever parsing failed.
func FuzzDetect(f *testing.F) {
	for _, s := range []string{
		`<domain type="kvm"/>`,
		`<domain type='qemu'><name>ns_vm</name><devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices></domain>`,
		`<domstatus><domain type='hyperv'/></domstatus>`,
		`<domain type="">`,
		`<?xml version="1.0"?><domain xmlns:qemu="http://libvirt.org/schemas/domain/qemu/1.0" type="kvm"/>`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		got, err := Detect(doc)
		switch got.Type {
		case KVM, QEMUTCG, MSHV, Unknown:
		default:
			t.Fatalf("Detect(%q) = %q, not a reported type", doc, got.Type)
		}
		if err != nil && got.Type != Unknown {
			t.Fatalf("Detect(%q) failed (%v) but reported %q", doc, err, got.Type)
		}
		if got.Type != FromDomainType(got.DomainType) {
			t.Fatalf("Detect(%q) = %q for domain type %q", doc, got.Type, got.DomainType)
		}
	})
}

// TestDetectStatusFiles: the status files libvirt wrote, and edits of one whose
// <domain> libvirtxml rejects although its type attribute reads "kvm": Detect decodes
// the whole <domain>, so those are errors, not detections.
func TestDetectStatusFiles(t *testing.T) {
	for seed, want := range map[string]Type{
		"libvirt-status-kvm":    KVM,
		"libvirt-status-tcg":    QEMUTCG,
		"kubevirt-status-root":  KVM,
		"kubevirt-status-large": QEMUTCG,
		// Written by KubeVirt v1.7.0's own virt-launcher in the lab's launcher pods
		// (libvirt 9.0, QEMU 7.2): a non-root launcher's status file under KVM and
		// under TCG, and the live XML its libvirt returns.
		"virt-launcher-status-kvm": KVM,
		"virt-launcher-status-tcg": QEMUTCG,
		"virt-launcher-live-kvm":   KVM,
	} {
		if got, err := Detect(corpusSeed(t, seed)); err != nil || got.Type != want {
			t.Errorf("%s: Detect = %v, %v; want %s", seed, got, err, want)
		}
	}
	base := corpusSeed(t, "libvirt-status-kvm")
	for _, edit := range []struct{ old, new string }{
		{"<vcpu placement='static'>1</vcpu>", "<vcpu placement='static'>x</vcpu>"},
		{"<controller type='pci'", "<controller"},
		{"    </devices>\n  </domain>", "    </device>\n  </domain>"},
	} {
		if !strings.Contains(base, edit.old) {
			t.Fatalf("libvirt-status-kvm has no %q", edit.old)
		}
		doc := strings.ReplaceAll(base, edit.old, edit.new)
		if got, err := Detect(doc); err == nil || got.Type != Unknown {
			t.Errorf("%q -> %q: Detect = %v, %v; want Unknown and an error", edit.old, edit.new, got, err)
		}
	}
}
