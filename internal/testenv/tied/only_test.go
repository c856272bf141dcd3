package tied

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Pdeathsig set anywhere but here is the bug this package exists for: twice a daemon
// started with a plain Pdeathsig died in the middle of `make test` (a kubelet, a root
// libvirtd) when a goroutine that had locked its starter's thread ended. Each time it
// looked like a flaky daemon. This test names any other place that sets it.
func TestOnlyTiedSetsPdeathsig(t *testing.T) {
	// The repository: every module of it starts processes (the receiver's tests, the
	// harnesses, the lab).
	root := filepath.Join("..", "..", "..")
	if _, err := os.Stat(filepath.Join(root, "receiver", "kubevirtreceiver", "go.mod")); err != nil {
		t.Fatalf("the repository root is not at %s: %v", root, err)
	}
	self, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	checked := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if abs, _ := filepath.Abs(path); abs == self {
				return filepath.SkipDir
			}
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "bin") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		checked++
		ast.Inspect(f, func(n ast.Node) bool {
			if id, ok := n.(*ast.Ident); ok && id.Name == "Pdeathsig" {
				t.Errorf("%s sets Pdeathsig: start the process with tied.Start instead", fset.Position(id.Pos()))
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 50 {
		t.Fatalf("only %d Go files found under %s: the walk missed the module", checked, root)
	}
}
