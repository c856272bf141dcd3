package vmi

import (
	"encoding/json"
	"reflect"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// decode decodes a VMI's JSON the way the watch's client does.
func decode(t testing.TB, doc string) *VMI {
	t.Helper()
	v := &VMI{}
	if err := json.Unmarshal([]byte(doc), v); err != nil {
		t.Fatalf("decoding %s: %v", doc, err)
	}
	return v
}

func TestDecodeReadsWhatItCanOfMistypedStatuses(t *testing.T) {
	meta := `"metadata":{"namespace":"default","name":"vm","uid":"u1","resourceVersion":"7","labels":{"a":"b"},"managedFields":[{"manager":"x"}]}`
	for status, want := range map[string]VMI{
		`{"phase":"Running","nodeName":"node-a","activePods":{"p1":"node-a"},"runtimeUser":107,"conditions":[{"type":"Paused","status":"True"}],"guestOSInfo":{"id":"fedora"}}`: {
			Phase: "Running", NodeName: "node-a", activePods: map[string]string{"p1": "node-a"}, RuntimeUser: 107, Paused: true,
		},
		`{"phase":"Running","nodeName":42}`:                                                                      {Phase: "Running"},
		`{"phase":{"Running":true},"nodeName":"node-a"}`:                                                         {NodeName: "node-a"},
		`{"phase":"Running","nodeName":"node-a","activePods":"p1"}`:                                              {Phase: "Running", NodeName: "node-a"},
		`{"phase":"Running","nodeName":"node-a","activePods":{"p1":5,"p2":"node-a"}}`:                            {Phase: "Running", NodeName: "node-a"},
		`{"phase":"Running","nodeName":"node-a","activePods":{}}`:                                                {Phase: "Running", NodeName: "node-a"},
		`{"phase":"Running","nodeName":"node-a","runtimeUser":"107"}`:                                            {Phase: "Running", NodeName: "node-a"},
		`{"phase":"Running","nodeName":"node-a","runtimeUser":1.5e300}`:                                          {Phase: "Running", NodeName: "node-a"},
		`{"phase":"Running","conditions":[1,"Paused",null,{"type":5,"status":true}]}`:                            {Phase: "Running"},
		`{"phase":"Running","conditions":{"type":"Paused","status":"True"}}`:                                     {Phase: "Running"},
		`{"phase":"Running","conditions":[{"type":"Paused","status":"False"},{"type":"Ready","status":"True"}]}`: {Phase: "Running"},
		`{"phase":"Running","migrationState":{"migrationUid":"m1","completed":true,"targetPod":"p2"}}`:           {Phase: "Running", MigrationEnded: "m1"},
		`{"phase":"Running","migrationState":{"migrationUid":"m1","completed":false}}`:                           {Phase: "Running"},
		`{"phase":"Running","migrationState":{"migrationUid":7,"completed":true}}`:                               {Phase: "Running"},
		`"Running"`:            {},
		`["Running","node-a"]`: {},
		`null`:                 {},
	} {
		got := decode(t, `{`+meta+`,"status":`+status+`}`)
		want.Namespace, want.Name, want.UID, want.ResourceVersion = "default", "vm", "u1", "7"
		if !reflect.DeepEqual(*got, want) {
			t.Errorf("status %s: got %+v, want %+v", status, *got, want)
		}
	}
	if got := decode(t, `{`+meta+`}`); got.Phase != "" || got.Name != "vm" {
		t.Errorf("no status: got %+v", got)
	}
}

// TestWireKeepsTheAnnotationThatEndsAStreamedList: client-go's reflector, streaming its
// first list as watch events, knows the list is complete by an annotation on a
// bookmark; the other annotations are not kept.
func TestDecodeKeepsTheAnnotationThatEndsAStreamedList(t *testing.T) {
	bookmark := decode(t, `{"kind":"VirtualMachineInstance","apiVersion":"kubevirt.io/v1","metadata":{"resourceVersion":"42","annotations":{"k8s.io/initial-events-end":"true"}}}`)
	if got := bookmark.GetAnnotations(); got[metav1.InitialEventsAnnotationKey] != "true" || bookmark.GetResourceVersion() != "42" {
		t.Errorf("bookmark: annotations %v, resourceVersion %q", got, bookmark.GetResourceVersion())
	}
	plain := decode(t, `{"metadata":{"name":"vm","annotations":{"kubevirt.io/latest-observed-api-version":"v1"}}}`)
	if got := plain.GetAnnotations(); got != nil {
		t.Errorf("a VMI's annotations kept: %v", got)
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
