package userbuild

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// ocbVersion is the ocb the Makefile generates the distribution with.
func ocbVersion(repo string) (string, error) {
	makefile, err := os.ReadFile(filepath.Join(repo, "Makefile"))
	if err != nil {
		return "", err
	}
	m := regexp.MustCompile(`(?m)^OCB_VERSION\s*:?=\s*(\S+)\s*$`).FindSubmatch(makefile)
	if m == nil {
		return "", fmt.Errorf("no OCB_VERSION in %s/Makefile", repo)
	}
	return string(m[1]), nil
}

// installOCB builds ocb into dir with this machine's own Go environment, so that
// building the tool does not count as part of what the user's build fetched.
func installOCB(ctx context.Context, repo, dir string) (string, error) {
	version, err := ocbVersion(repo)
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "go", "install", "go.opentelemetry.io/collector/cmd/builder@"+version)
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOWORK=off")
	cmd.WaitDelay = 10 * time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building ocb %s: %w\n%s", version, err, out)
	}
	return filepath.Join(dir, "builder"), nil
}

// machineGoEnv is what `go env` says here, before the test changes anything.
type machineGoEnv struct {
	GOMODCACHE, GOPROXY, GOCACHE string
}

func readMachineGoEnv(ctx context.Context) (machineGoEnv, error) {
	var env machineGoEnv
	out, err := exec.CommandContext(ctx, "go", "env", "-json", "GOMODCACHE", "GOPROXY", "GOCACHE").Output()
	if err != nil {
		return env, fmt.Errorf("go env: %w", err)
	}
	if err := json.Unmarshal(out, &env); err != nil {
		return env, fmt.Errorf("go env: %w", err)
	}
	return env, nil
}

// userGoEnv is the environment of a user's build whose module proxy serves our
// modules from proxyDir, with modCache as its module cache (fresh, so that nothing
// extracted before, such as an older v0.1.0, is reused). Every other module comes
// from this machine's download cache, read as an offline proxy, and only what is not
// there from this machine's proxy. The Go build cache is shared: compiles are keyed
// by content, so they are reused and prove nothing either way.
func userGoEnv(machine machineGoEnv, proxyDir, modCache string) []string {
	set := map[string]string{
		"GOMODCACHE": modCache,
		"GOPROXY": strings.Join([]string{
			"file://" + proxyDir,
			"file://" + filepath.Join(machine.GOMODCACHE, "cache", "download"),
			machine.GOPROXY,
		}, ","),
		// Our modules are in no checksum database. GONOSUMDB only skips that lookup;
		// GOPRIVATE would also skip the proxy, and with it the zips.
		"GONOSUMDB": ownerPath,
		"GOCACHE":   machine.GOCACHE,
		// Outside this repository's go.work, as a user's checkout is.
		"GOWORK": "off",
		// One compile at a time: `make test` runs this beside the real node's tests,
		// whose timings (a deleted VMI's line gone within a second) a build taking
		// both cores disturbed.
		"GOFLAGS": "-buildvcs=false -p=1",
	}
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		// GOPRIVATE and GONOPROXY would send our modules past the proxy.
		if _, ours := set[name]; ours || name == "GOPRIVATE" || name == "GONOPROXY" {
			continue
		}
		env = append(env, kv)
	}
	for k, v := range set {
		env = append(env, k+"="+v)
	}
	return env
}

// runOCB runs ocb on config in workDir (where the config's output_path points),
// its output into logPath.
func runOCB(ctx context.Context, ocb, config, workDir string, env []string, logPath string) error {
	log, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.CommandContext(ctx, ocb, "--config", config)
	cmd.Dir, cmd.Env = workDir, env
	cmd.Stdout, cmd.Stderr = log, log
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		out, _ := os.ReadFile(logPath)
		return fmt.Errorf("ocb --config %s: %w\n%s", config, err, withoutDownloads(string(out)))
	}
	return nil
}

// withoutDownloads drops go's "go: downloading" lines from ocb's output, hundreds
// of them on a build into an empty module cache, which would bury the error.
func withoutDownloads(out string) string {
	var kept []string
	dropped := 0
	for _, line := range strings.Split(out, "\n") {
		// The first one ends ocb's own error line, which stays.
		if i := strings.Index(line, "go: downloading "); i >= 0 {
			dropped++
			if strings.TrimSpace(line[:i]) == "" {
				continue
			}
			line = line[:i]
		}
		kept = append(kept, line)
	}
	return fmt.Sprintf("(%d \"go: downloading\" lines left out)\n%s", dropped, strings.Join(kept, "\n"))
}

// cleanModCache removes a module cache, whose directories Go makes read-only.
func cleanModCache(env []string) error {
	cmd := exec.Command("go", "clean", "-modcache")
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go clean -modcache: %w\n%s", err, out)
	}
	return nil
}
