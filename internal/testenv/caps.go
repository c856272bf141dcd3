package testenv

// The QEMU capability cache shared between daemons: seeded into a new daemon's
// private cache before it starts and saved back once it answers, so that only
// the first daemon on a machine probes QEMU. cpu.go keeps the cache valid.

import (
	"bytes"
	"os"
	"path/filepath"
)

// DefaultCapsCacheDir returns a per-user directory suitable for
// [LibvirtdOptions.CapsCacheDir], or "" when the user has no cache directory.
func DefaultCapsCacheDir() string {
	base, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(base, "otelcol-kubevirt-testenv", "qemu-capabilities")
}

// privateCapsDir is where session-mode libvirt keeps its QEMU capabilities.
func (d *Libvirtd) privateCapsDir() string {
	return filepath.Join(d.cacheDir, "libvirt", "qemu", "cache", "capabilities")
}

// seedCapsCache copies the shared capability cache into the private one.
func (d *Libvirtd) seedCapsCache(uid, gid int) error {
	if d.capsCacheDir == "" {
		return nil
	}
	entries, err := filepath.Glob(filepath.Join(d.capsCacheDir, "*.xml"))
	if err != nil || len(entries) == 0 {
		return nil // nothing cached yet
	}
	dst := d.privateCapsDir()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	// MkdirAll created the levels below cache/ as root; libvirt writes there.
	for p := dst; p != d.cacheDir; p = filepath.Dir(p) {
		if err := os.Chown(p, uid, gid); err != nil {
			return err
		}
	}
	for _, src := range entries {
		data, err := os.ReadFile(src)
		if err != nil {
			continue // a concurrent writer may be replacing it; just re-probe
		}
		p := filepath.Join(dst, filepath.Base(src))
		if err := os.WriteFile(p, data, 0o600); err != nil {
			return err
		}
		if err := os.Chown(p, uid, gid); err != nil {
			return err
		}
	}
	return nil
}

// saveCapsCache copies new or changed capability files back to the shared
// cache. Each file is replaced atomically so concurrent daemons never read a
// torn file. Failures only cost a later re-probe, so they are just logged.
func (d *Libvirtd) saveCapsCache() {
	if d.capsCacheDir == "" {
		return
	}
	entries, _ := filepath.Glob(filepath.Join(d.privateCapsDir(), "*.xml"))
	for _, src := range entries {
		if err := func() error {
			data, err := os.ReadFile(src)
			if err != nil {
				return err
			}
			dst := filepath.Join(d.capsCacheDir, filepath.Base(src))
			if old, err := os.ReadFile(dst); err == nil && bytes.Equal(old, data) {
				return nil
			}
			if err := os.MkdirAll(d.capsCacheDir, 0o755); err != nil {
				return err
			}
			tmp, err := os.CreateTemp(d.capsCacheDir, ".tmp-*")
			if err != nil {
				return err
			}
			defer os.Remove(tmp.Name())
			if _, err := tmp.Write(data); err != nil {
				tmp.Close()
				return err
			}
			if err := tmp.Close(); err != nil {
				return err
			}
			return os.Rename(tmp.Name(), dst)
		}(); err != nil {
			d.logNote("saving QEMU capabilities cache: %v", err)
		}
	}
}
