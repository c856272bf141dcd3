package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"golang.org/x/mod/modfile"
)

// PinnedModuleDir returns the directory, in the Go module cache, of module at the
// version the go.mod of toolsDir (relative to the repository root, e.g. "tools/crds")
// requires. `go mod download` fetches it the first time, checked against that
// directory's go.sum (a mismatch is an error, never rewritten), and finds it there
// afterwards. Tests read files a project ships in its source this way, such as CRDs,
// without a copy of them in this repository.
func PinnedModuleDir(toolsDir, module string) (string, error) {
	dir, err := findRepoPath(toolsDir)
	if err != nil {
		return "", err
	}
	gomod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return "", err
	}
	f, err := modfile.ParseLax("go.mod", gomod, nil)
	if err != nil {
		return "", err
	}
	version := ""
	for _, r := range f.Require {
		if r.Mod.Path == module {
			version = r.Mod.Version
		}
	}
	if version == "" {
		return "", fmt.Errorf("%s/go.mod does not require %s", toolsDir, module)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("no go command to fetch %s@%s with: %w", module, version, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "mod", "download", "-json", module)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, runErr := cmd.Output()
	var mod struct{ Version, Dir, Error string }
	if err := json.Unmarshal(out, &mod); runErr != nil || err != nil || mod.Error != "" {
		return "", fmt.Errorf("go mod download %s in %s: %v %v %s %s (the Go module proxy must be reachable, or the module cached)",
			module, toolsDir, runErr, err, mod.Error, stderr.String())
	}
	if mod.Version != version {
		return "", fmt.Errorf("go mod download gave %s@%s, want %s", module, mod.Version, version)
	}
	return mod.Dir, nil
}
