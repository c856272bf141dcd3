package testenv

import (
	"errors"
	"os"
	"testing"
)

func TestKVMUsable(t *testing.T) {
	ok, why := KVMUsable()
	t.Logf("KVMUsable() = %v, %q", ok, why)
	if ok != (why == "") {
		t.Errorf("KVMUsable() = %v, %q: a reason must be given exactly when KVM is unusable", ok, why)
	}
	if _, err := os.Stat("/dev/kvm"); errors.Is(err, os.ErrNotExist) && ok {
		t.Errorf("KVMUsable() = true without /dev/kvm")
	}
}
