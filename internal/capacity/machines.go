package capacity

import (
	"encoding/json"
	"fmt"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sort"
	"strings"
	"time"

	machinev1beta1 "github.com/openshift/api/machine/v1beta1"
)

const (
	// AnnotationFailedTypes records, on one of the operator's MachineSets,
	// the instance types whose Machines failed in its zone and when:
	// "m6g.xlarge=2026-12-01T18:00:00Z,m7g.xlarge=...". A failed type is
	// not tried again in that zone for FailureMemory.
	AnnotationFailedTypes = "build.multiarch.io/failed-instance-types"
	// AnnotationLastFailure is the last Machine error seen on the
	// MachineSet, as builds report it.
	AnnotationLastFailure = "build.multiarch.io/last-failure"
	// MachinePhaseFailed is the phase of a Machine whose instance cannot be
	// made (status.errorReason and errorMessage say why).
	MachinePhaseFailed = "Failed"
)

// FailureMemory is how long an instance type that failed in a zone is
// skipped there: capacity shortages on AWS usually last minutes to hours.
var FailureMemory = time.Hour

// MachineFailure is a Machine that will not bring a node.
type MachineFailure struct {
	Machine string
	// Reason is status.errorReason, or ProvisioningTimeout.
	Reason  string
	Message string
}

func (f MachineFailure) String() string {
	return fmt.Sprintf("Machine %s: %s: %s", f.Machine, f.Reason, f.Message)
}

// MachinesOf are the Machines of ms (by the Machine API's label), sorted by
// name.
func MachinesOf(ms *machinev1beta1.MachineSet, machines []machinev1beta1.Machine) []*machinev1beta1.Machine {
	var out []*machinev1beta1.Machine
	for i := range machines {
		m := &machines[i]
		if m.Namespace == ms.Namespace && m.Labels[LabelMachineSet] == ms.Name {
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// MachineFailures are the machines that will not bring a node: phase
// Failed (the cloud refused the instance: capacity, quota, a type missing
// in the zone, a bad image), or still without a node provisioningTimeout
// after they were created (0: no limit). Machines being deleted do not
// count.
func MachineFailures(machines []*machinev1beta1.Machine, now time.Time, provisioningTimeout time.Duration) []MachineFailure {
	var out []MachineFailure
	for _, m := range machines {
		if m.DeletionTimestamp != nil {
			continue
		}
		phase := ""
		if m.Status.Phase != nil {
			phase = *m.Status.Phase
		}
		switch {
		case phase == MachinePhaseFailed || m.Status.ErrorReason != nil && m.Status.NodeRef == nil && m.Status.ErrorMessage != nil:
			f := MachineFailure{Machine: m.Name, Reason: "Failed"}
			if m.Status.ErrorReason != nil {
				f.Reason = string(*m.Status.ErrorReason)
			}
			if m.Status.ErrorMessage != nil {
				f.Message = *m.Status.ErrorMessage
			}
			out = append(out, f)
		case m.Status.NodeRef == nil && CreationFailed(m) != nil:
			// The AWS actuator's CreateError (InsufficientInstanceCapacity,
			// a quota) is not terminal: the Machine stays Provisioning and
			// is retried, with the cloud's error in the MachineCreation
			// condition of its provider status. Waiting would not bring a
			// node from this zone soon: the next zone or type is tried.
			c := CreationFailed(m)
			out = append(out, MachineFailure{Machine: m.Name, Reason: c.Reason, Message: c.Message})
		case m.Status.NodeRef == nil && provisioningTimeout > 0 && now.Sub(m.CreationTimestamp.Time) >= provisioningTimeout:
			out = append(out, MachineFailure{Machine: m.Name, Reason: "ProvisioningTimeout",
				Message: fmt.Sprintf("no node %s after the Machine was created (phase %s)", provisioningTimeout, orNone(phase))})
		}
	}
	return out
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// FailedTypes parses AnnotationFailedTypes.
func FailedTypes(annotations map[string]string) map[string]time.Time {
	out := map[string]time.Time{}
	for _, kv := range strings.Split(annotations[AnnotationFailedTypes], ",") {
		t, at, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			continue
		}
		if when, ok := parseTime(at); ok {
			out[t] = when
		}
	}
	return out
}

// FormatFailedTypes is the annotation value of failed, dropping entries
// older than FailureMemory at now.
func FormatFailedTypes(failed map[string]time.Time, now time.Time) string {
	var parts []string
	for t, at := range failed {
		if now.Sub(at) < FailureMemory {
			parts = append(parts, t+"="+at.UTC().Format(time.RFC3339))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// TypeFailed: instance type t failed in the MachineSet's zone less than
// FailureMemory before now.
func TypeFailed(annotations map[string]string, t string, now time.Time) bool {
	at, ok := FailedTypes(annotations)[t]
	return ok && now.Sub(at) < FailureMemory
}

// NextInstanceType is the first of candidates (the policy's default, then
// its fallbacks) that has not failed in the MachineSet's zone at now, ""
// when all have.
func NextInstanceType(annotations map[string]string, candidates []string, now time.Time) string {
	for _, t := range candidates {
		if !TypeFailed(annotations, t, now) {
			return t
		}
	}
	return ""
}

// FailedUntil is when the MachineSet's current instance type may be tried
// again in its zone (zero when it has not failed).
func FailedUntil(annotations map[string]string, t string) time.Time {
	at, ok := FailedTypes(annotations)[t]
	if !ok {
		return time.Time{}
	}
	return at.Add(FailureMemory)
}

// WithInstanceType returns a copy of ms's providerSpec with its instance
// type (AWS), VM size (Azure) or machine type (GCP) set to t: the fallback
// when the current type failed in the MachineSet's zone. Only the
// operator's MachineSets at zero replicas are changed this way (a
// MachineSet's template applies to Machines created after the change).
func WithInstanceType(ms *machinev1beta1.MachineSet, t string) (*runtime.RawExtension, error) {
	var spec any
	switch MachineSetPlatform(ms) {
	case PlatformAWS:
		cfg, err := AWSProviderConfig(ms)
		if err != nil {
			return nil, err
		}
		cfg.InstanceType = t
		spec = cfg
	case PlatformAzure:
		cfg, err := AzureProviderSpec(ms)
		if err != nil {
			return nil, err
		}
		cfg.VMSize = t
		spec = cfg
	case PlatformGCP:
		cfg, err := GCPProviderSpec(ms)
		if err != nil {
			return nil, err
		}
		cfg.MachineType = t
		spec = cfg
	default:
		return nil, fmt.Errorf("MachineSet %s: providerSpec of no supported platform", ms.Name)
	}
	raw, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("encode providerSpec: %w", err)
	}
	return &runtime.RawExtension{Raw: raw}, nil
}

// Eligible orders the operator's MachineSets of one architecture for
// scaling up, leaving out those whose current instance type failed in
// their zone: first those whose type comes first among candidates (the
// same type in the next zone before a fallback type), then by name.
func Eligible(ours []*machinev1beta1.MachineSet, candidates []string, now time.Time) []*machinev1beta1.MachineSet {
	rank := func(ms *machinev1beta1.MachineSet) int {
		t := InstanceTypeOf(ms)
		for i, c := range candidates {
			if c == t {
				return i
			}
		}
		return len(candidates)
	}
	var out []*machinev1beta1.MachineSet
	for _, ms := range ours {
		if !TypeFailed(ms.Annotations, InstanceTypeOf(ms), now) {
			out = append(out, ms)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if ri, rj := rank(out[i]), rank(out[j]); ri != rj {
			return ri < rj
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// CreationFailed is the MachineCreation condition of an AWS Machine's
// provider status when it is False (the last launch failed), else nil.
func CreationFailed(m *machinev1beta1.Machine) *metav1.Condition {
	if m.Status.ProviderStatus == nil || len(m.Status.ProviderStatus.Raw) == 0 {
		return nil
	}
	var st machinev1beta1.AWSMachineProviderStatus
	if err := json.Unmarshal(m.Status.ProviderStatus.Raw, &st); err != nil {
		return nil
	}
	for i := range st.Conditions {
		c := &st.Conditions[i]
		if c.Type == string(machinev1beta1.MachineCreation) && c.Status == metav1.ConditionFalse {
			return c
		}
	}
	return nil
}
