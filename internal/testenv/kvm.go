package testenv

// Whether KVM works: for this process (KVMUsable) and for a daemon's
// unprivileged user, who is granted /dev/kvm with an ACL (Libvirtd.KVMUsable).

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// KVMUsable reports whether this daemon can run "kvm" guests, with the
// reason when not: the host must pass [KVMUsable], the /dev/kvm ACL for the
// daemon user must have been granted, and libvirt must offer the kvm domain
// type.
func (d *Libvirtd) KVMUsable() (bool, string) {
	if ok, why := KVMUsable(); !ok {
		return false, why
	}
	if d.kvmACLErr != nil {
		return false, fmt.Sprintf("granting /dev/kvm to %s: %v", d.userName, d.kvmACLErr)
	}
	conn, err := d.Connect()
	if err != nil {
		return false, err.Error()
	}
	defer conn.Close()
	if _, err := conn.GetDomainCapabilities("", "x86_64", "", "kvm", 0); err != nil {
		return false, fmt.Sprintf("libvirt offers no kvm domains to user %s: %v", d.userName, err)
	}
	return true, ""
}

// KVM ioctls from <linux/kvm.h>.
const (
	kvmGetAPIVersion = 0xAE00
	kvmCreateVM      = 0xAE01
	kvmAPIVersion    = 12
)

// KVMUsable reports whether /dev/kvm exists and works for the calling process
// (it opens it and creates and discards a VM), with the reason when not. The
// harness additionally grants the daemon user access (see
// [Libvirtd.KVMUsable]).
func KVMUsable() (bool, string) {
	const dev = "/dev/kvm"
	st, err := os.Stat(dev)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false, dev + " does not exist (no KVM on this host; enable (nested) virtualisation or load kvm_intel/kvm_amd)"
		}
		return false, err.Error()
	}
	if st.Mode()&os.ModeCharDevice == 0 {
		return false, dev + " is not a character device"
	}
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return false, fmt.Sprintf("cannot open %s: %v", dev, err)
	}
	defer f.Close()
	v, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), kvmGetAPIVersion, 0)
	if errno != 0 {
		return false, fmt.Sprintf("KVM_GET_API_VERSION: %v", errno)
	}
	if v != kvmAPIVersion {
		return false, fmt.Sprintf("KVM API version %d, want %d", v, kvmAPIVersion)
	}
	vm, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), kvmCreateVM, 0)
	if errno != 0 {
		return false, fmt.Sprintf("KVM_CREATE_VM: %v", errno)
	}
	syscall.Close(int(vm))
	return true, ""
}

// grantKVM gives userName read/write access to /dev/kvm with a POSIX ACL,
// which leaves the device's owner, group and mode alone. The entry is not
// removed again: other daemons may rely on it and it is harmless on a test
// host.
func grantKVM(userName string) error {
	setfacl, err := exec.LookPath("setfacl")
	if err != nil {
		return fmt.Errorf("setfacl not found (install the acl package): %w", err)
	}
	out, err := exec.Command(setfacl, "-m", "u:"+userName+":rw", "/dev/kvm").CombinedOutput()
	if err != nil {
		return fmt.Errorf("setfacl: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}
