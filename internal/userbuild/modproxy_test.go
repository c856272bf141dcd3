package userbuild

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	modzip "golang.org/x/mod/zip"
)

// localModule is one of this repository's published modules: its path and where its
// go.mod lies in the checkout.
type localModule struct {
	Path string
	Dir  string
}

// releaseVersion is the version the receiver's go.mod requires of the harness module.
// A release tags both modules with one version (DEVELOPERS.md), so this is also the
// version a user names for the receiver.
func releaseVersion(receiverDir string) (string, error) {
	gomod := filepath.Join(receiverDir, "go.mod")
	data, err := os.ReadFile(gomod)
	if err != nil {
		return "", err
	}
	f, err := modfile.ParseLax(gomod, data, nil)
	if err != nil {
		return "", err
	}
	for _, r := range f.Require {
		if r.Mod.Path == testenvModule {
			return r.Mod.Version, nil
		}
	}
	return "", fmt.Errorf("%s does not require %s", gomod, testenvModule)
}

// writeModuleProxy writes each module at version into dir as a GOPROXY file tree
// (<escaped path>/@v/<version>.{info,mod,zip} and list), the files a module proxy
// serves for a tagged version: the zip made from the module's directory as the proxy
// makes it (no nested modules, no symlinks, no VCS directories), the go.mod byte for
// byte as it is in the checkout.
func writeModuleProxy(dir, version string, mods ...localModule) error {
	for _, m := range mods {
		if err := writeProxyModule(dir, version, m); err != nil {
			return fmt.Errorf("module %s: %w", m.Path, err)
		}
	}
	return nil
}

func writeProxyModule(dir, version string, m localModule) error {
	gomod, err := os.ReadFile(filepath.Join(m.Dir, "go.mod"))
	if err != nil {
		return err
	}
	if got := modfile.ModulePath(gomod); got != m.Path {
		return fmt.Errorf("%s/go.mod declares module %q", m.Dir, got)
	}
	escaped, err := module.EscapePath(m.Path)
	if err != nil {
		return err
	}
	vdir := filepath.Join(dir, escaped, "@v")
	if err := os.MkdirAll(vdir, 0o755); err != nil {
		return err
	}

	var zip bytes.Buffer
	if err := modzip.CreateFromDir(&zip, module.Version{Path: m.Path, Version: version}, m.Dir); err != nil {
		return err
	}
	info, err := json.Marshal(struct {
		Version string
		Time    time.Time
	}{version, time.Now().UTC().Truncate(time.Second)})
	if err != nil {
		return err
	}
	for name, data := range map[string][]byte{
		version + ".zip":  zip.Bytes(),
		version + ".mod":  gomod,
		version + ".info": info,
		"list":            []byte(version + "\n"),
	} {
		if err := os.WriteFile(filepath.Join(vdir, name), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}
