package launcher

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/vmi"
)

const (
	uidA = "6f1c2a4e-8d3b-4c9a-b7e5-0a1b2c3d4e5f"
	uidB = "0b8e7d6c-5a4f-4e3d-9c2b-1a0f9e8d7c6b"
)

func TestMaxPodsDirLen(t *testing.T) {
	// Worked out by hand: /<36>/volumes/kubernetes.io~empty-dir/libvirt-runtime/virtqemud-sock
	// is 100 bytes.
	if MaxPodsDirLen != 7 {
		t.Errorf("MaxPodsDirLen = %d, want 7", MaxPodsDirLen)
	}
}

func TestFindNonRootLauncher(t *testing.T) {
	got, err := Find("/pods", &vmi.VMI{
		Namespace:   "default",
		Name:        "my-vm",
		Pods:        []string{uidA},
		RuntimeUser: 107,
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := "/pods/" + uidA + "/volumes/kubernetes.io~empty-dir/libvirt-runtime"
	want := []Launcher{{
		Domain:      "default_my-vm",
		RuntimeDir:  dir,
		Socket:      dir + "/virtqemud-sock",
		URI:         "qemu+unix:///session?socket=" + dir + "/virtqemud-sock",
		FallbackURI: "qemu+unix:///system?socket=" + dir + "/virtqemud-sock",
		StatusFile:  dir + "/qemu/run/default_my-vm.xml",
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Find (-want +got):\n%s", diff)
	}
}

func TestFindRootLauncher(t *testing.T) {
	got, err := Find("/pods/", &vmi.VMI{
		Namespace: "legacy",
		Name:      "root-vm",
		Pods:      []string{uidA},
		// RuntimeUser 0: a root launcher, or a KubeVirt that predates the field.
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := "/pods/" + uidA + "/volumes/kubernetes.io~empty-dir/libvirt-runtime"
	if len(got) != 1 {
		t.Fatalf("Find returned %d launchers, want 1", len(got))
	}
	l := got[0]
	if want := "qemu+unix:///system?socket=" + dir + "/virtqemud-sock"; l.URI != want {
		t.Errorf("URI = %q, want %q", l.URI, want)
	}
	if want := "qemu+unix:///session?socket=" + dir + "/virtqemud-sock"; l.FallbackURI != want {
		t.Errorf("FallbackURI = %q, want %q", l.FallbackURI, want)
	}
	if want := dir + "/qemu/legacy_root-vm.xml"; l.StatusFile != want {
		t.Errorf("StatusFile = %q, want %q", l.StatusFile, want)
	}
}

func TestFindGivesALauncherPerPod(t *testing.T) {
	// A migration within one node, or a completed pod left listed after one: two pods
	// on this node, in the order the watch sorted them.
	got, err := Find("/pods", &vmi.VMI{Namespace: "ns", Name: "vm", Pods: []string{uidB, uidA}, RuntimeUser: 107})
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, l := range got {
		dirs = append(dirs, l.RuntimeDir)
	}
	want := []string{"/pods/" + uidB + "/" + VolumeRelPath, "/pods/" + uidA + "/" + VolumeRelPath}
	if diff := cmp.Diff(want, dirs); diff != "" {
		t.Errorf("launchers' runtime directories (-want +got):\n%s", diff)
	}
}

func TestFindNoLauncherOnNode(t *testing.T) {
	for name, pods := range map[string][]string{"none": nil, "empty": {}} {
		if _, err := Find("/pods", &vmi.VMI{Namespace: "ns", Name: "vm", Pods: pods, RuntimeUser: 107}); !errors.Is(err, ErrNoLauncher) {
			t.Errorf("%s: err = %v, want ErrNoLauncher", name, err)
		}
	}
}

func TestFindSocketPathTooLong(t *testing.T) {
	v := &vmi.VMI{Namespace: "ns", Name: "vm", Pods: []string{uidA}, RuntimeUser: 107}
	// /var/lib/kubelet/pods, as a user might naively mount it, is far too long.
	_, err := Find("/var/lib/kubelet/pods", v)
	if !errors.Is(err, ErrSocketPathTooLong) {
		t.Fatalf("err = %v, want ErrSocketPathTooLong", err)
	}
	for _, want := range []string{"libvirt.pods_dir", "/pods", "121 bytes", "107"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}

	// Exactly at the limit it fits, one byte more it does not.
	fits := "/" + strings.Repeat("p", MaxPodsDirLen-1)
	got, err := Find(fits, v)
	if err != nil {
		t.Fatalf("Find(%q): %v", fits, err)
	}
	if len(got[0].Socket) != MaxSocketPath {
		t.Errorf("socket %s is %d bytes, want exactly %d", got[0].Socket, len(got[0].Socket), MaxSocketPath)
	}
	if _, err := Find(fits+"p", v); !errors.Is(err, ErrSocketPathTooLong) {
		t.Errorf("Find(%q): err = %v, want ErrSocketPathTooLong", fits+"p", err)
	}
}

func TestFindRejectsPathTricks(t *testing.T) {
	for name, v := range map[string]*vmi.VMI{
		"uid with slash":  {Namespace: "ns", Name: "vm", Pods: []string{"../../etc"}},
		"uid dot-dot":     {Namespace: "ns", Name: "vm", Pods: []string{".."}},
		"empty uid":       {Namespace: "ns", Name: "vm", Pods: []string{""}},
		"name with slash": {Namespace: "ns", Name: "../x", Pods: []string{uidA}},
		"empty namespace": {Name: "vm", Pods: []string{uidA}},
		"dot-dot name":    {Namespace: "ns", Name: "..", Pods: []string{uidA}},
	} {
		t.Run(name, func(t *testing.T) {
			if got, err := Find("/pods", v); err == nil {
				t.Errorf("Find = %+v, want an error", got)
			}
		})
	}
}

func TestValidatePodsDir(t *testing.T) {
	for _, ok := range []string{"/pods", "/pods/", "/p", "/abcdef", "/tmp/xy"} {
		if err := ValidatePodsDir(ok); err != nil {
			t.Errorf("ValidatePodsDir(%q) = %v, want nil", ok, err)
		}
	}
	for dir, want := range map[string]string{
		"":                      "must be set",
		"pods":                  "absolute",
		"/var/lib/kubelet/pods": "21 bytes, too long",
		"/abcdefg":              "at most 7 bytes",
	} {
		err := ValidatePodsDir(dir)
		if err == nil || !strings.HasPrefix(err.Error(), "libvirt.pods_dir: ") || !strings.Contains(err.Error(), want) {
			t.Errorf("ValidatePodsDir(%q) = %v, want an error naming libvirt.pods_dir and saying %q", dir, err, want)
		}
	}
}

// TestValidatePodsDirAgreesWithFind: a pods_dir that passes validation never yields a
// too-long socket for a real (36-byte) pod UID, and one that fails always does.
func TestValidatePodsDirAgreesWithFind(t *testing.T) {
	v := &vmi.VMI{Namespace: "ns", Name: "vm", Pods: []string{uidA}, RuntimeUser: 107}
	for n := 1; n <= 20; n++ {
		dir := "/" + strings.Repeat("d", n-1)
		_, findErr := Find(dir, v)
		valErr := ValidatePodsDir(dir)
		if (valErr == nil) != (findErr == nil) {
			t.Errorf("pods_dir %q: ValidatePodsDir = %v but Find = %v", dir, valErr, findErr)
		}
	}
}
