package vmi

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestFromUnstructuredToleratesMissingAndMistypedFields(t *testing.T) {
	u := &unstructured.Unstructured{Object: map[string]any{
		"metadata": map[string]any{"namespace": "default", "name": "vm", "uid": "u1"},
		"status": map[string]any{
			"phase":       "Running",
			"nodeName":    42, // wrong type: treated as absent
			"activePods":  map[string]any{"p1": "node-a"},
			"runtimeUser": int64(107),
		},
	}}
	v := FromUnstructured(u)
	if v.Phase != "Running" || v.NodeName != "" || v.ActivePods["p1"] != "node-a" || v.RuntimeUser != 107 {
		t.Fatalf("FromUnstructured = %+v", v)
	}
	if ok, why := v.Reportable("node-a"); ok || why != "no status.nodeName" {
		t.Errorf("Reportable = %v, %q", ok, why)
	}
}

func TestReportable(t *testing.T) {
	base := func() *VMI {
		v := &VMI{Phase: "Running", NodeName: "node-a"}
		v.Namespace, v.Name = "default", "vm"
		return v
	}
	tests := []struct {
		name   string
		mutate func(*VMI)
		want   bool
	}{
		{"running here", func(*VMI) {}, true},
		{"pending", func(v *VMI) { v.Phase = "Pending" }, false},
		{"succeeded", func(v *VMI) { v.Phase = "Succeeded" }, false},
		{"failed", func(v *VMI) { v.Phase = "Failed" }, false},
		{"elsewhere", func(v *VMI) { v.NodeName = "node-b" }, false},
		{"no node", func(v *VMI) { v.NodeName = "" }, false},
		{"no name", func(v *VMI) { v.Name = "" }, false},
		{"no namespace", func(v *VMI) { v.Namespace = "" }, false},
	}
	for _, tt := range tests {
		v := base()
		tt.mutate(v)
		if got, _ := v.Reportable("node-a"); got != tt.want {
			t.Errorf("%s: Reportable = %v, want %v", tt.name, got, tt.want)
		}
	}
}
