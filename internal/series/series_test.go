package series

import (
	"reflect"
	"testing"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/internal/hypervisor"
)

var (
	vmKVM = Series{Namespace: "default", Name: "my-vm", Node: "worker-node-1", Type: hypervisor.KVM}
	vmTCG = Series{Namespace: "default", Name: "my-vm", Node: "worker-node-1", Type: hypervisor.QEMUTCG}
	other = Series{Namespace: "prod", Name: "db", Node: "worker-node-1", Type: hypervisor.Unknown}
)

func TestSetTypeChangeRetractsTheOldSeriesInTheSameEmission(t *testing.T) {
	st := NewSet()
	st.Put("default/my-vm", vmTCG)
	st.Take()
	st.Put("default/my-vm", vmKVM)

	live, removed := st.Take()
	if !reflect.DeepEqual(live, []Series{vmKVM}) || !reflect.DeepEqual(removed, []Series{vmTCG}) {
		t.Fatalf("Take() = %v, %v; want live [kvm], removed [qemu-tcg]", live, removed)
	}
}

func TestSetDeleteRetractsOnceAndReAddCancelsRetraction(t *testing.T) {
	st := NewSet()
	st.Put("default/my-vm", vmKVM)
	st.Put("prod/db", other)
	st.Delete("default/my-vm")

	live, removed := st.Take()
	if !reflect.DeepEqual(live, []Series{other}) || !reflect.DeepEqual(removed, []Series{vmKVM}) {
		t.Fatalf("after delete: Take() = %v, %v", live, removed)
	}
	if _, removed = st.Take(); len(removed) != 0 {
		t.Fatalf("a removed series is retracted twice: %v", removed)
	}

	st.Delete("prod/db")
	st.Put("prod/db", other)
	if live, removed = st.Take(); len(removed) != 0 || len(live) != 1 {
		t.Fatalf("delete then re-add: Take() = %v, %v; want the series live and no retraction", live, removed)
	}
}

func TestSetSignalsChangesOnlyWhenSomethingChanged(t *testing.T) {
	st := NewSet()
	st.Put("default/my-vm", vmKVM)
	st.Put("prod/db", other)
	select {
	case <-st.Changed():
	default:
		t.Fatal("no change signalled after Put")
	}
	st.Put("default/my-vm", vmKVM)
	st.Delete("default/none")
	select {
	case <-st.Changed():
		t.Fatal("change signalled for a no-op")
	default:
	}
}

func TestSetUnsentRetractionsComeBackUnlessLiveAgain(t *testing.T) {
	st := NewSet()
	st.Put("default/my-vm", vmKVM)
	st.Put("prod/db", other)
	st.Take()
	st.Delete("default/my-vm")
	st.Delete("prod/db")
	_, removed := st.Take()
	st.Put("prod/db", other) // back before the failed batch could be resent
	st.Unsent(removed)

	live, again := st.Take()
	if !reflect.DeepEqual(again, []Series{vmKVM}) || !reflect.DeepEqual(live, []Series{other}) {
		t.Fatalf("after Unsent: Take() = %v, %v; want live [db], removed [my-vm]", live, again)
	}
}

func TestSetGivesUpARetractionAfterMaxUnsentFailures(t *testing.T) {
	st := NewSet()
	st.Put("default/my-vm", vmKVM)
	st.Take()
	st.Delete("default/my-vm")
	for i := range MaxUnsent {
		_, removed := st.Take()
		if len(removed) != 1 {
			t.Fatalf("attempt %d: removed = %v, want the retraction", i+1, removed)
		}
		st.Unsent(removed)
	}
	if _, removed := st.Take(); len(removed) != 0 {
		t.Fatalf("after %d failed batches the retraction is still pending: %v", MaxUnsent, removed)
	}
}
