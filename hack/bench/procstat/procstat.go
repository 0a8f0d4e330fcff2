// Package procstat reads what the benchmarks measure of a process from
// /proc (Linux): its CPU time, its memory, its parent.
package procstat

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Fields are the fields of /proc/PID/stat after the command name: [0] is
// the state (field 3 of proc(5)), [1] the parent's pid; nil when the
// process is gone.
func Fields(pid int) []string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(data)
	return strings.Fields(s[strings.LastIndex(s, ")")+2:])
}

// PPID is the parent of pid, 0 when unknown.
func PPID(pid int) int {
	f := Fields(pid)
	if len(f) < 2 {
		return 0
	}
	p, _ := strconv.Atoi(f[1])
	return p
}

// CPU is pid's utime+stime in seconds; false when it cannot be read.
func CPU(pid int) (float64, bool) {
	f := Fields(pid)
	if len(f) < 13 {
		return 0, false
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100, true // USER_HZ
}

// StatusMiB is a kB field of /proc/PID/status (VmHWM, VmRSS, ...) in MiB,
// or -1.
func StatusMiB(pid int, key string) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, key+":") {
			kb, _ := strconv.Atoi(strings.Fields(l)[1])
			return float64(kb) / 1024
		}
	}
	return -1
}
