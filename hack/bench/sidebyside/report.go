package main

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"time"
)

func printResult(r result, n int) {
	fmt.Printf("== %s: %d objects in %s (created in %s)\n", r.variant, n, r.makespan.Round(time.Millisecond), r.createdAll.Round(time.Millisecond))
	fmt.Printf("   per object, create -> run: p50 %s  p99 %s  max %s; statuses recorded %s after the last run\n",
		r.p50.Round(time.Millisecond), r.p99.Round(time.Millisecond), r.max.Round(time.Millisecond), r.statusLag.Round(time.Millisecond))
	keys := make([]string, 0, len(r.writes))
	for k := range r.writes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Printf("   %-42s %6.0f  (%.2f per object)\n", k, r.writes[k], r.writes[k]/float64(n))
	}
	if len(r.lost) > 0 {
		fmt.Printf("   FAILED WITHOUT A RUN (not in the latencies): %d: %v\n", len(r.lost), r.lost)
	}
	fmt.Printf("   controller writes: %.2f per object; lease writes (API server heartbeat, leader election): %.0f; the load generator's creates: %v\n", r.writesPerObject, r.leases, r.generator)
	fmt.Printf("   controller peak RSS (VmHWM) %.1f MiB (after warm-up %.1f MiB); CPU during the load %.2f s (since start %.2f s); kube-apiserver %.2f s, etcd %.2f s\n",
		r.rssMiB, r.rssWarmMiB, r.cpu, r.cpuTotal, r.cpuAPIServer, r.cpuEtcd)
	fmt.Printf("   load average %s; log %s\n", r.load, r.logFile)
}

type metric struct {
	name   string
	unit   string
	format string
	value  func(r result, n int) float64
}

func byVerb(verb string) func(r result, n int) float64 {
	return func(r result, n int) float64 {
		var s float64
		for k, v := range r.writes {
			if strings.HasPrefix(k, verb+" ") {
				s += v
			}
		}
		return s / float64(n)
	}
}

var metrics = []metric{
	{"makespan: create start → last run exists", "s", "%.2f", func(r result, _ int) float64 { return r.makespan.Seconds() }},
	{"per object, create → run: p50", "s", "%.2f", func(r result, _ int) float64 { return r.p50.Seconds() }},
	{"per object, create → run: p99", "s", "%.2f", func(r result, _ int) float64 { return r.p99.Seconds() }},
	{"controller API writes per object", "", "%.2f", func(r result, _ int) float64 { return r.writesPerObject }},
	{"… POST (creates) per object", "", "%.2f", byVerb("POST")},
	{"… PUT (updates) per object", "", "%.2f", byVerb("PUT")},
	{"… PATCH per object", "", "%.2f", byVerb("PATCH")},
	{"objects failed without a run (not in the latencies)", "", "%.0f", func(r result, _ int) float64 { return float64(len(r.lost)) }},
	{"lease writes in the run (API server heartbeat + leader election; not above)", "", "%.0f", func(r result, _ int) float64 { return r.leases }},
	{"controller peak RSS (VmHWM)", "MiB", "%.1f", func(r result, _ int) float64 { return r.rssMiB }},
	{"controller CPU during the load (utime+stime)", "s", "%.2f", func(r result, _ int) float64 { return r.cpu }},
	{"kube-apiserver CPU during the load", "s", "%.2f", func(r result, _ int) float64 { return r.cpuAPIServer }},
	{"etcd CPU during the load", "s", "%.2f", func(r result, _ int) float64 { return r.cpuEtcd }},
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func summarize(o options, variants []variant, results map[string][]result) string {
	var b strings.Builder
	host, _ := os.Hostname()
	load := ""
	if l, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.TrimSpace(string(l))
	}
	shape := "a Build and a BuildRun per object (each client creates the Build, then its BuildRun)"
	if o.swShape == "one" {
		shape = "BuildRuns of one Build"
	}
	fmt.Fprintf(&b, "\n%s, %s, operator at %s, %d rounds (alternating %s), %d objects by %d clients; Shipwright: %s; load average at the end %s\n\n",
		time.Now().UTC().Format("2006-01-02"), host, o.commit, o.rounds, names(variants), o.builds, o.parallel, shape, load)
	b.WriteString("| median (min–max) |")
	for _, v := range variants {
		fmt.Fprintf(&b, " %s |", v.name)
	}
	var swNames []string
	if len(variants) > 0 && variants[0].ours {
		for _, v := range variants[1:] {
			swNames = append(swNames, v.name)
			fmt.Fprintf(&b, " ours / %s |", v.name)
		}
	}
	b.WriteString("\n|---|")
	for range len(variants) + len(swNames) {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, m := range metrics {
		fmt.Fprintf(&b, "| %s |", m.name)
		med := map[string]float64{}
		for _, v := range variants {
			var vals []float64
			for _, r := range results[v.name] {
				vals = append(vals, m.value(r, o.builds))
			}
			if len(vals) == 0 {
				b.WriteString(" |")
				continue
			}
			sort.Float64s(vals)
			med[v.name] = median(vals)
			unit := ""
			if m.unit != "" {
				unit = " " + m.unit
			}
			fmt.Fprintf(&b, " "+m.format+"%s ("+m.format+"–"+m.format+") |", med[v.name], unit, vals[0], vals[len(vals)-1])
		}
		for _, sw := range swNames {
			if med[sw] == 0 {
				b.WriteString(" – |")
				continue
			}
			fmt.Fprintf(&b, " %.2f |", med["ours"]/med[sw])
		}
		b.WriteString("\n")
	}
	b.WriteString("\nControllers' writes by resource, median per object:\n\n")
	keys := map[string]bool{}
	for _, rs := range results {
		for _, r := range rs {
			for k := range r.writes {
				keys[k] = true
			}
		}
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, v := range variants {
		var parts []string
		for _, k := range sorted {
			var vals []float64
			for _, r := range results[v.name] {
				vals = append(vals, r.writes[k]/float64(o.builds))
			}
			if m := median(vals); m > 0 {
				parts = append(parts, fmt.Sprintf("%s %.2f", k, m))
			}
		}
		fmt.Fprintf(&b, "- %s: %s\n", v.name, strings.Join(parts, ", "))
	}
	return b.String()
}

func names(vs []variant) string {
	var s []string
	for _, v := range vs {
		s = append(s, v.name)
	}
	return strings.Join(s, ", ")
}
