package manifests

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// TestShippedRoleIsTheDocumentedOne keeps rbac.yaml's ClusterRole equal to the one the
// receiver's README tells users to grant, which the receiver's own tests run against
// a real kube-apiserver (its outage tests bind it and expect every VMI watch to work).
func TestShippedRoleIsTheDocumentedOne(t *testing.T) {
	readme, err := os.ReadFile("../../receiver/kubevirtreceiver/README.md")
	if err != nil {
		t.Fatal(err)
	}
	var documented *rbacv1.ClusterRole
	for _, m := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(readme), -1) {
		if strings.Contains(m[1], "kind: ClusterRole\n") {
			documented = &rbacv1.ClusterRole{}
			if err := yaml.UnmarshalStrict([]byte(m[1]), documented); err != nil {
				t.Fatal(err)
			}
		}
	}
	if documented == nil {
		t.Fatal("no ClusterRole in the receiver's README.md")
	}

	var shipped rbacv1.ClusterRole
	typed(t, loadManifests(t), "ClusterRole", &shipped)
	if shipped.Name != documented.Name {
		t.Errorf("ClusterRole name: rbac.yaml %q, README.md %q", shipped.Name, documented.Name)
	}
	if !reflect.DeepEqual(shipped.Rules, documented.Rules) {
		t.Errorf("ClusterRole rules differ:\nrbac.yaml: %+v\nREADME.md: %+v", shipped.Rules, documented.Rules)
	}
}
