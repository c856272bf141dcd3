package testenv

// A Libvirtd's QEMU guests: the minimal domain, starting and destroying it
// as virt-launcher does, and where libvirt keeps its status file, PID and log.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"
)

// StatusFile is where libvirt keeps the live status of a running domain:
// <RuntimeDir>/libvirt/qemu/run/<name>.xml (spelled with LibvirtRuntimeDir
// if set), a <domstatus> element wrapping the live <domain>. libvirt writes
// it before the start call returns and removes it when the guest stops.
func (d *Libvirtd) StatusFile(name string) string {
	return filepath.Join(d.libvirtRun, "qemu", "run", name+".xml")
}

// GuestLogPath is the file that receives the guest QEMU's stdout/stderr.
func (d *Libvirtd) GuestLogPath(name string) string {
	return filepath.Join(d.cacheDir, "libvirt", "qemu", "log", name+".log")
}

// GuestPID returns the QEMU process id of a running guest, from libvirt's
// <RuntimeDir>/libvirt/qemu/run/<name>.pid.
func (d *Libvirtd) GuestPID(name string) (int, error) {
	b, err := os.ReadFile(filepath.Join(d.libvirtRun, "qemu", "run", name+".pid"))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// DomainXML returns a minimal domain definition: 64 MiB, one vCPU, i440fx,
// no disk, no network, no display. Such a guest sits in SeaBIOS forever.
// domainType is libvirt's domain type, "kvm" or "qemu" (TCG). KubeVirt names
// domains <namespace>_<name>, e.g. "default_my-vm".
func DomainXML(name, domainType string) (string, error) {
	if name == "" || domainType == "" {
		return "", errors.New("domain name and type must not be empty")
	}
	dom := libvirtxml.Domain{
		Type:   domainType,
		Name:   name,
		Memory: &libvirtxml.DomainMemory{Value: 64, Unit: "MiB"},
		VCPU:   &libvirtxml.DomainVCPU{Value: 1},
		OS: &libvirtxml.DomainOS{
			Type: &libvirtxml.DomainOSType{Arch: "x86_64", Machine: "pc", Type: "hvm"},
		},
		Devices: &libvirtxml.DomainDeviceList{},
	}
	return dom.Marshal()
}

// StartGuest defines and starts a minimal guest (see [DomainXML]) named name
// with domain type domainType ("kvm" or "qemu").
func (d *Libvirtd) StartGuest(ctx context.Context, name, domainType string) error {
	x, err := DomainXML(name, domainType)
	if err != nil {
		return err
	}
	return d.StartGuestXML(ctx, x)
}

// StartGuestXML defines a persistent domain from domainXML and starts it, as
// virt-launcher does. When it returns nil, QEMU runs and the status file
// exists. libvirt calls cannot be interrupted, so ctx is only checked before
// they begin.
func (d *Libvirtd) StartGuestXML(ctx context.Context, domainXML string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	conn, err := d.Connect()
	if err != nil {
		return err
	}
	defer conn.Close()
	dom, err := conn.DomainDefineXML(domainXML)
	if err != nil {
		return d.errorf("defining domain: %v", err)
	}
	defer dom.Free()
	name, _ := dom.GetName()
	if err := dom.Create(); err != nil {
		_ = dom.Undefine()
		msg := fmt.Sprintf("starting domain %s: %v", name, err)
		if strings.Contains(err.Error(), "kvm") && d.kvmACLErr != nil {
			msg += fmt.Sprintf(" (granting /dev/kvm to %s failed: %v)", d.userName, d.kvmACLErr)
		}
		if tail := tailFile(d.GuestLogPath(name), 10); tail != "" {
			msg += "\nguest log " + d.GuestLogPath(name) + ":\n" + tail
		}
		return d.errorf("%s", msg)
	}
	return nil
}

// DestroyGuest stops a guest (like pulling the plug) and removes its
// definition. A guest that is defined but not running is just undefined.
func (d *Libvirtd) DestroyGuest(name string) error {
	conn, err := d.Connect()
	if err != nil {
		return err
	}
	defer conn.Close()
	dom, err := conn.LookupDomainByName(name)
	if err != nil {
		return d.errorf("looking up domain %s: %v", name, err)
	}
	defer dom.Free()
	if active, err := dom.IsActive(); err == nil && active {
		if err := dom.Destroy(); err != nil {
			// libvirt reports "not running" when the guest went away by
			// other means meanwhile; gone is what was asked for.
			if active, aerr := dom.IsActive(); aerr != nil || active {
				return d.errorf("destroying domain %s: %v", name, err)
			}
		}
	}
	if err := dom.Undefine(); err != nil {
		return d.errorf("undefining domain %s: %v", name, err)
	}
	return nil
}

// destroyAllGuests kills every running guest's QEMU and waits until libvirtd
// has noticed, which makes it remove their status files. It is best effort
// and bounded in time: whatever survives is killed by Stop anyway.
//
// libvirtd only lets go of a guest once its QEMU has been reaped. QEMU is a
// child of PID 1, and a PID 1 that reaps lazily (as on some CI VMs) makes
// this, like virDomainDestroy, take a second or two.
func (d *Libvirtd) destroyAllGuests() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = callUntil(ctx, d.daemon.done, func() error {
		conn, err := libvirt.NewConnect(d.URI())
		if err != nil {
			return err
		}
		defer conn.Close()
		for {
			doms, err := conn.ListAllDomains(libvirt.CONNECT_LIST_DOMAINS_ACTIVE)
			if err != nil || len(doms) == 0 {
				return err
			}
			for _, dom := range doms {
				if name, err := dom.GetName(); err == nil {
					if pid, err := d.GuestPID(name); err == nil {
						_ = syscall.Kill(pid, syscall.SIGKILL)
					}
				}
				dom.Free()
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			time.Sleep(readyPollInterval)
		}
	})
}
