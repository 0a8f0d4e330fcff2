package capacity

import (
	"strconv"
	"time"
)

// ConflictPolicy bounds how often the operator writes replicas that someone
// else keeps changing.
type ConflictPolicy struct {
	// Window is the period corrections are counted in.
	Window time.Duration
	// MaxCorrections is how many corrections a Window allows; one more is a
	// conflict.
	MaxCorrections int
	// Backoff is how long the operator stands back after a conflict.
	Backoff time.Duration
}

// DefaultConflictPolicy allows two corrections in ten minutes, then stands
// back for fifteen.
var DefaultConflictPolicy = ConflictPolicy{Window: 10 * time.Minute, MaxCorrections: 2, Backoff: 15 * time.Minute}

// Share is the replicas of the i-th of n MachineSets (sorted by name) when
// total replicas are spread over them: 3 over 3 zones is 1 each, 1 over 3
// zones is 1 in the first.
func Share(total int32, i, n int) int32 {
	if n <= 0 {
		return 0
	}
	s := total / int32(n)
	if int32(i) < total%int32(n) {
		s++
	}
	return s
}

// ScaleInput is one managed MachineSet and the demand for its architecture.
type ScaleInput struct {
	Now time.Time
	// Replicas is spec.replicas (nil counts as 1, the Machine API default).
	Replicas int32
	// Target is this MachineSet's Share of Settings.MachineSetReplicas.
	Target int32
	// ScaleUp: a Managed build needs the architecture and no usable node exists.
	ScaleUp bool
	// Needed: any build needs the architecture.
	Needed bool
	// Annotations of the MachineSet (read only).
	Annotations map[string]string
	IdleTimeout time.Duration
	Conflict    ConflictPolicy
}

// ScaleDecision is what to write. A nil Replicas leaves spec.replicas alone;
// Annotations maps each annotation to change to its new value, nil to remove.
type ScaleDecision struct {
	Replicas    *int32
	Annotations map[string]*string
	// Conflict is true while the operator stands back (report
	// MachineSetConflict); NewConflict when this decision starts it (event).
	Conflict    bool
	NewConflict bool
	// Corrected is true when Replicas overrides someone else's value.
	Corrected bool
	// RequeueAfter is when to look again (idle timeout or backoff), 0 if not needed.
	RequeueAfter time.Duration
}

func (d *ScaleDecision) set(k, v string) {
	if d.Annotations == nil {
		d.Annotations = map[string]*string{}
	}
	d.Annotations[k] = &v
}

func (d *ScaleDecision) remove(in ScaleInput, k string) {
	if _, ok := in.Annotations[k]; !ok {
		return
	}
	if d.Annotations == nil {
		d.Annotations = map[string]*string{}
	}
	d.Annotations[k] = nil
}

// Empty says there is nothing to write.
func (d ScaleDecision) Empty() bool { return d.Replicas == nil && len(d.Annotations) == 0 }

// DecideScale is the scaling policy of one managed MachineSet (see the package
// documentation).
func DecideScale(in ScaleInput) ScaleDecision {
	var d ScaleDecision
	if since, ok := parseTime(in.Annotations[AnnotationConflictSince]); ok {
		if until := since.Add(in.Conflict.Backoff); in.Now.Before(until) {
			d.Conflict = true
			d.RequeueAfter = until.Sub(in.Now)
			return d
		}
		// Backoff over: try again with a clean count.
		d.remove(in, AnnotationConflictSince)
		d.remove(in, AnnotationCorrections)
		d.remove(in, AnnotationCorrectionsSince)
		in.Annotations = withoutKeys(in.Annotations, AnnotationConflictSince, AnnotationCorrections, AnnotationCorrectionsSince)
	}

	want := in.Replicas
	switch {
	case in.Needed || in.ScaleUp:
		d.remove(in, AnnotationLastNeeded)
		if in.ScaleUp && in.Replicas < in.Target {
			want = in.Target
		}
	case in.Replicas > 0:
		last, ok := parseTime(in.Annotations[AnnotationLastNeeded])
		if !ok {
			d.set(AnnotationLastNeeded, in.Now.UTC().Format(time.RFC3339))
			d.RequeueAfter = in.IdleTimeout
			break
		}
		if idle := in.Now.Sub(last); idle < in.IdleTimeout {
			d.RequeueAfter = in.IdleTimeout - idle
			break
		}
		want = 0
		d.remove(in, AnnotationLastNeeded)
	default:
		d.remove(in, AnnotationLastNeeded)
	}
	if want == in.Replicas {
		return d
	}

	if last, ok := in.Annotations[AnnotationReplicas]; ok && last != strconv.Itoa(int(in.Replicas)) {
		// Someone else changed what we wrote last.
		count, _ := strconv.Atoi(in.Annotations[AnnotationCorrections])
		since, ok := parseTime(in.Annotations[AnnotationCorrectionsSince])
		if !ok || in.Now.Sub(since) > in.Conflict.Window {
			count, since = 0, in.Now
		}
		count++
		d.set(AnnotationCorrections, strconv.Itoa(count))
		d.set(AnnotationCorrectionsSince, since.UTC().Format(time.RFC3339))
		if count > in.Conflict.MaxCorrections {
			d.set(AnnotationConflictSince, in.Now.UTC().Format(time.RFC3339))
			d.Conflict, d.NewConflict = true, true
			d.RequeueAfter = in.Conflict.Backoff
			return d
		}
		d.Corrected = true
	}
	d.Replicas = &want
	d.set(AnnotationReplicas, strconv.Itoa(int(want)))
	return d
}

// InConflict says whether the operator stands back from ms at now.
func InConflict(annotations map[string]string, now time.Time, p ConflictPolicy) bool {
	since, ok := parseTime(annotations[AnnotationConflictSince])
	return ok && now.Before(since.Add(p.Backoff))
}

func parseTime(s string) (time.Time, bool) {
	if s == "" {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339, s)
	return t, err == nil
}

func withoutKeys(m map[string]string, keys ...string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	for _, k := range keys {
		delete(out, k)
	}
	return out
}
