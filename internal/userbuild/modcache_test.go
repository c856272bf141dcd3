package userbuild

import (
	"debug/buildinfo"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/dirhash"
)

// downloads lists, for each module under prefix the build fetched, the files of it
// the module cache's download directory holds (.mod alone: only its requirements
// were read; .zip too: its packages were loaded).
func downloads(modCache, prefix string) (map[string][]string, error) {
	escaped, err := module.EscapePath(prefix)
	if err != nil {
		return nil, err
	}
	base := filepath.Join(modCache, "cache", "download")
	got := map[string][]string{}
	err = filepath.WalkDir(filepath.Join(base, escaped), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return filepath.SkipDir
			}
			return err
		}
		if d.IsDir() || filepath.Base(filepath.Dir(p)) != "@v" || strings.HasSuffix(p, ".lock") {
			return nil
		}
		rel, err := filepath.Rel(base, filepath.Dir(filepath.Dir(p)))
		if err != nil {
			return err
		}
		path, err := module.UnescapePath(filepath.ToSlash(rel))
		if err != nil {
			return err
		}
		got[path] = append(got[path], d.Name())
		return nil
	})
	return got, err
}

// checkNothingOfTheLab fails if the build fetched or extracted the repository's root
// module (the lab and its end-to-end tests), which a user's build must never need.
func checkNothingOfTheLab(modCache string, fetched map[string][]string) error {
	if files := fetched[rootModule]; len(files) > 0 {
		return fmt.Errorf("the build fetched the root module %s: %v", rootModule, files)
	}
	escaped, err := module.EscapePath(rootModule)
	if err != nil {
		return err
	}
	extracted, err := filepath.Glob(filepath.Join(modCache, escaped+"@*"))
	if err != nil {
		return err
	}
	if len(extracted) > 0 {
		return fmt.Errorf("the build extracted the root module: %v", extracted)
	}
	return nil
}

// checkZipFromProxy fails unless the module cache holds m's zip and it is the one the
// test wrote into its proxy, by the hash go.sum records for it.
func checkZipFromProxy(modCache, proxyDir string, m module.Version) (sum string, err error) {
	escaped, err := module.EscapePath(m.Path)
	if err != nil {
		return "", err
	}
	ours := filepath.Join(proxyDir, escaped, "@v", m.Version+".zip")
	want, err := dirhash.HashZip(ours, dirhash.Hash1)
	if err != nil {
		return "", err
	}
	cached, err := os.ReadFile(filepath.Join(modCache, "cache", "download", escaped, "@v", m.Version+".ziphash"))
	if err != nil {
		return "", fmt.Errorf("%s was not downloaded as a zip: %w", m, err)
	}
	if got := strings.TrimSpace(string(cached)); got != want {
		return "", fmt.Errorf("%s in the module cache hashes to %s, the zip written for it to %s: it came from elsewhere", m, got, want)
	}
	return want, nil
}

// checkBuiltFrom fails unless the binary at bin was built with m, unreplaced, whose
// zip hashed to sum.
func checkBuiltFrom(bin string, m module.Version, sum string) error {
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(info.Deps, func(d *debug.Module) bool { return d.Path == m.Path })
	if i < 0 {
		return fmt.Errorf("%s was not built with %s", bin, m.Path)
	}
	d := info.Deps[i]
	if d.Replace != nil {
		return fmt.Errorf("%s was built with %s replaced by %s %s", bin, m.Path, d.Replace.Path, d.Replace.Version)
	}
	if d.Version != m.Version || d.Sum != sum {
		return fmt.Errorf("%s was built with %s %s (%s), want %s (%s)", bin, m.Path, d.Version, d.Sum, m.Version, sum)
	}
	return nil
}

// zipFigures counts the module zips in a module cache and their bytes, what a build
// into an empty cache had to fetch, and how many of them, not being ours, were not in
// this machine's download cache (at machineDownload) either: those came from the
// network proxy, and would on every machine whose `make build` did not fetch them.
func zipFigures(modCache, machineDownload string) (count int, size int64, fromNetwork []string, err error) {
	base := filepath.Join(modCache, "cache", "download")
	ours, err := module.EscapePath(ownerPath)
	if err != nil {
		return 0, 0, nil, err
	}
	err = filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".zip") {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		count++
		size += info.Size()
		rel, err := filepath.Rel(base, p)
		if err != nil {
			return err
		}
		if strings.HasPrefix(filepath.ToSlash(rel), ours+"/") {
			return nil
		}
		if _, err := os.Stat(filepath.Join(machineDownload, rel)); os.IsNotExist(err) {
			fromNetwork = append(fromNetwork, filepath.ToSlash(rel))
		}
		return nil
	})
	return count, size, fromNetwork, err
}
