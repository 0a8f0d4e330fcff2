package procstat

import (
	"os"
	"testing"
)

func TestReadsThisProcess(t *testing.T) {
	if got := PPID(os.Getpid()); got != os.Getppid() {
		t.Errorf("PPID = %d, want %d", got, os.Getppid())
	}
	if v, ok := CPU(os.Getpid()); !ok || v < 0 {
		t.Errorf("CPU = %v, %v", v, ok)
	}
	if v := StatusMiB(os.Getpid(), "VmRSS"); v <= 0 {
		t.Errorf("VmRSS = %v MiB", v)
	}
	if v := StatusMiB(os.Getpid(), "NoSuchField"); v != -1 {
		t.Errorf("an unknown field = %v, want -1", v)
	}
	// A pid that cannot exist (above pid_max).
	if _, ok := CPU(1 << 30); ok || Fields(1<<30) != nil || PPID(1<<30) != 0 {
		t.Error("a process that does not exist reads as one")
	}
}
