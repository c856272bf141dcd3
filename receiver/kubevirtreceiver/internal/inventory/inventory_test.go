package inventory

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/hypervisor"
)

const myVM, db = "default/my-vm", "prod/db"

// sorted sorts s, and makes an empty s nil so that DeepEqual compares contents.
func sorted(s []Series) []Series {
	if len(s) == 0 {
		return nil
	}
	slices.SortFunc(s, func(a, b Series) int {
		if c := strings.Compare(a.Key, b.Key); c != 0 {
			return c
		}
		return strings.Compare(string(a.Type), string(b.Type))
	})
	return s
}

func checkTake(t *testing.T, what string, take func() ([]Series, []Series), wantLive, wantRetract []Series) {
	t.Helper()
	live, retract := take()
	if !reflect.DeepEqual(sorted(live), sorted(wantLive)) || !reflect.DeepEqual(sorted(retract), sorted(wantRetract)) {
		t.Fatalf("%s: live %v, retract %v; want live %v, retract %v", what, live, retract, wantLive, wantRetract)
	}
}

func TestChangesHoldOnlyWhatChangedAndAllHoldsEverything(t *testing.T) {
	inv := New()
	inv.Put(myVM, Record{Reported: hypervisor.KVM, Known: hypervisor.KVM})
	inv.Put(db, Record{Reported: hypervisor.Unknown})
	checkTake(t, "first", inv.Changes, []Series{{myVM, hypervisor.KVM}, {db, hypervisor.Unknown}}, nil)
	checkTake(t, "nothing changed", inv.Changes, nil, nil)

	inv.Put(db, Record{Reported: hypervisor.QEMUTCG, Known: hypervisor.QEMUTCG})
	checkTake(t, "db detected", inv.Changes, []Series{{db, hypervisor.QEMUTCG}}, []Series{{db, hypervisor.Unknown}})
	checkTake(t, "all", inv.All, []Series{{myVM, hypervisor.KVM}, {db, hypervisor.QEMUTCG}}, nil)

	inv.Put(myVM, Record{Reported: hypervisor.MSHV})
	checkTake(t, "all after a change", inv.All, []Series{{myVM, hypervisor.MSHV}, {db, hypervisor.QEMUTCG}}, []Series{{myVM, hypervisor.KVM}})
	checkTake(t, "all took the change", inv.Changes, nil, nil)
}

func TestDeleteRetractsOnceAndPutAgainCancelsTheRetraction(t *testing.T) {
	inv := New()
	inv.Put(myVM, Record{Reported: hypervisor.KVM})
	inv.Put(db, Record{Reported: hypervisor.Unknown})
	inv.Changes()
	inv.Delete(myVM)
	checkTake(t, "deleted", inv.Changes, nil, []Series{{myVM, hypervisor.KVM}})
	checkTake(t, "retracted once", inv.Changes, nil, nil)
	if _, ok := inv.Get(myVM); ok {
		t.Fatal("a deleted record is still there")
	}

	inv.Delete(db)
	inv.Put(db, Record{Reported: hypervisor.Unknown})
	checkTake(t, "deleted and put again", inv.Changes, []Series{{db, hypervisor.Unknown}}, nil)
}

func TestASeriesWithdrawnUntilTheDomainIsBackIsRetracted(t *testing.T) {
	inv := New()
	inv.Put(myVM, Record{Reported: hypervisor.KVM, Known: hypervisor.KVM, KnownPods: []string{"pod-1"}})
	inv.Changes()
	inv.Put(myVM, Record{Known: hypervisor.KVM, KnownPods: []string{"pod-1"}})
	checkTake(t, "withdrawn", inv.Changes, nil, []Series{{myVM, hypervisor.KVM}})
	r, ok := inv.Get(myVM)
	if !ok || r.Reported != "" || r.Known != hypervisor.KVM || !slices.Equal(r.KnownPods, []string{"pod-1"}) {
		t.Fatalf("record = %+v, %v; want no series, the known type and its launchers kept", r, ok)
	}
	if got := inv.Unanswered(); !reflect.DeepEqual(got, []string{myVM}) {
		t.Fatalf("Unanswered = %v, want the VMI without a series", got)
	}
}

func TestChangedIsSignalledOnlyWhenASeriesChanged(t *testing.T) {
	inv := New()
	signalled := func() bool {
		select {
		case <-inv.Changed():
			return true
		default:
			return false
		}
	}
	inv.Put(myVM, Record{Reported: hypervisor.KVM})
	if !signalled() {
		t.Fatal("no signal after a new series")
	}
	inv.Put(myVM, Record{Reported: hypervisor.KVM, Known: hypervisor.KVM, KnownPods: []string{"pod-7"}})
	inv.Put(db, Record{Known: hypervisor.QEMUTCG})
	inv.Delete("default/none")
	inv.Delete(db)
	if signalled() {
		t.Fatal("signal without any series changing")
	}
	inv.Delete(myVM)
	if !signalled() {
		t.Fatal("no signal after a series went")
	}
}

func TestUnsentComesBackUnlessItChangedMeanwhile(t *testing.T) {
	inv := New()
	inv.Put(myVM, Record{Reported: hypervisor.KVM})
	inv.Put(db, Record{Reported: hypervisor.Unknown})
	inv.Put("default/gone", Record{Reported: hypervisor.QEMUTCG})
	inv.Changes()
	inv.Delete("default/gone")
	inv.Put(db, Record{Reported: hypervisor.QEMUTCG})
	live, retract := inv.Changes() // the batch that carried these fails
	inv.Put(db, Record{Reported: hypervisor.MSHV})
	inv.Unsent(live, retract)
	checkTake(t, "after Unsent", inv.Changes,
		[]Series{{db, hypervisor.MSHV}},
		[]Series{{"default/gone", hypervisor.QEMUTCG}, {db, hypervisor.Unknown}, {db, hypervisor.QEMUTCG}})

	inv.Delete(myVM)
	_, retract = inv.Changes()
	inv.Put(myVM, Record{Reported: hypervisor.KVM}) // back before the failed batch could be resent
	inv.Unsent(nil, retract)
	checkTake(t, "live again", inv.Changes, []Series{{myVM, hypervisor.KVM}}, nil)
}

func TestARetractionIsGivenUpAfterMaxUnsentFailures(t *testing.T) {
	inv := New()
	inv.Put(myVM, Record{Reported: hypervisor.KVM})
	inv.Changes()
	inv.Delete(myVM)
	for i := range MaxUnsent {
		live, retract := inv.Changes()
		if len(retract) != 1 {
			t.Fatalf("attempt %d: retract = %v, want the retraction", i+1, retract)
		}
		inv.Unsent(live, retract)
	}
	checkTake(t, "after MaxUnsent failures", inv.Changes, nil, nil)
}

func TestRetractionsAreBounded(t *testing.T) {
	inv := New()
	for i := range MaxRetractions + 10 {
		key := "ns/vm-" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + strings.Repeat("y", i/26)
		inv.Put(key, Record{Reported: hypervisor.KVM})
		inv.Delete(key)
	}
	if _, retract := inv.Changes(); len(retract) != MaxRetractions {
		t.Fatalf("%d retractions pending, want at most %d", len(retract), MaxRetractions)
	}
}
