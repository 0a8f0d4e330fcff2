// Package capacitypolicy merges the cluster admin's BuildCapacityPolicy
// (api/v1alpha1, the object named cluster) with the operator's flags
// (internal/settings) into the capacity policy in effect. It is pure: the
// caller reads the object (nil when absent) and passes it in.
//
// The rule is the same for every field: a field the policy sets wins; an
// unset field, or no policy object at all, keeps the flag. So an absent
// policy is exactly the operator's behaviour before the API existed: managed
// capacity for every namespace, the --instance-type of each architecture,
// any instance type a tenant asks for, --machineset-replicas,
// --machineset-zones, --arch-toleration, --machineset-idle-timeout, and no
// provisioning timeout.
package capacitypolicy

import (
	"fmt"
	"slices"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/multiarch-build/multiarch-build-operator/internal/settings"
)

// Policy is the capacity policy in effect.
type Policy struct {
	// FromObject is true when a BuildCapacityPolicy was given (its fields,
	// where set, won over the flags).
	FromObject bool
	// Generation of the object the policy came from (0 without one), for
	// status.observedGeneration.
	Generation int64

	// ManagedCapacity is false when the policy says Disabled: the operator
	// must not create or scale up any MachineSet.
	ManagedCapacity bool
	// NamespaceSelector is the policy's selector as written (nil: every
	// namespace); Selector is it parsed. An invalid selector selects no
	// namespace (fail closed) and is reported in Problems.
	NamespaceSelector *metav1.LabelSelector
	Selector          labels.Selector

	// Architectures is the policy of each architecture: every one the flags
	// or the object name. Use Arch, which also answers for others.
	Architectures map[string]ArchPolicy
	// Zones are the zones for architectures without zones of their own, in
	// order of preference; empty means the template MachineSet's zone.
	Zones []string
	// DefaultMaxReplicas is the MaxReplicas of an architecture the object
	// does not set it for: --machineset-replicas.
	DefaultMaxReplicas int32
	// IdleTimeout is how long a managed MachineSet stays scaled up unneeded.
	IdleTimeout time.Duration
	// ProvisioningTimeout is how long a build may wait for a node before it
	// fails; 0 means no limit.
	ProvisioningTimeout time.Duration

	// Problems are fields of the object that could not be used (the CRD's
	// validation should make this impossible; a controller reports them in
	// a condition). The flag's value is used instead, or, for the
	// namespace selector, no namespace.
	Problems []string
}

// ArchPolicy is the policy of one architecture.
type ArchPolicy struct {
	// InstanceTypes: the first is the default instance type of new
	// MachineSets, the others fallbacks in order. Empty when neither the
	// object nor --instance-type names one.
	InstanceTypes []string
	// Restricted is true when the object lists instance types for this
	// architecture: tenants may then ask only for those. False: any type
	// (today's behaviour), the list being the flag's default.
	Restricted bool
	// MaxReplicas is the most nodes the operator's MachineSets of this
	// architecture may have in total while builds need it; 0 forbids
	// managed capacity for it.
	MaxReplicas int32
	// Tolerations of this architecture's build pods and nodes.
	Tolerations []corev1.Toleration
	// Zones in order of preference; empty means the template MachineSet's.
	Zones []string
}

// DefaultInstanceType is the instance type of new MachineSets, "" if none.
func (a ArchPolicy) DefaultInstanceType() string {
	if len(a.InstanceTypes) == 0 {
		return ""
	}
	return a.InstanceTypes[0]
}

// Effective merges the policy object p (nil when there is none) over the
// flags.
func Effective(flags settings.Settings, p *v1alpha1.BuildCapacityPolicy) Policy {
	eff := Policy{
		ManagedCapacity:     true,
		Selector:            labels.Everything(),
		Architectures:       map[string]ArchPolicy{},
		Zones:               slices.Clone(flags.MachineSetZones),
		DefaultMaxReplicas:  flags.MachineSetReplicas,
		IdleTimeout:         flags.MachineSetIdleTimeout,
		ProvisioningTimeout: 0,
	}
	flagArch := func(arch string) ArchPolicy {
		a := ArchPolicy{MaxReplicas: flags.MachineSetReplicas}
		if t := flags.InstanceTypes[arch]; t != "" {
			a.InstanceTypes = []string{t}
		}
		if ts := flags.Tolerations[arch]; len(ts) > 0 {
			a.Tolerations = cloneTolerations(ts)
		}
		return a
	}
	for arch := range flags.InstanceTypes {
		eff.Architectures[arch] = flagArch(arch)
	}
	for arch := range flags.Tolerations {
		eff.Architectures[arch] = flagArch(arch)
	}
	if p == nil {
		for arch, a := range eff.Architectures {
			a.Zones = slices.Clone(eff.Zones)
			eff.Architectures[arch] = a
		}
		return eff
	}

	eff.FromObject = true
	eff.Generation = p.Generation
	s := p.Spec
	eff.ManagedCapacity = s.ManagedCapacity != v1alpha1.ManagedCapacityDisabled
	if s.NamespaceSelector != nil {
		eff.NamespaceSelector = s.NamespaceSelector.DeepCopy()
		sel, err := metav1.LabelSelectorAsSelector(s.NamespaceSelector)
		if err != nil {
			eff.Selector = labels.Nothing()
			eff.Problems = append(eff.Problems, fmt.Sprintf("spec.namespaceSelector is invalid, no namespace gets Managed capacity: %v", err))
		} else {
			eff.Selector = sel
		}
	}
	if len(s.Zones) > 0 {
		eff.Zones = slices.Clone(s.Zones)
	}
	if d, ok := duration(s.IdleTimeout, "spec.idleTimeout", &eff.Problems); ok {
		eff.IdleTimeout = d
	}
	if d, ok := duration(s.ProvisioningTimeout, "spec.provisioningTimeout", &eff.Problems); ok {
		eff.ProvisioningTimeout = d
	}
	zonesOf := map[string][]string{}
	for _, ap := range s.Architectures {
		arch := string(ap.Arch)
		a, ok := eff.Architectures[arch]
		if !ok {
			a = flagArch(arch)
		}
		if len(ap.InstanceTypes) > 0 {
			a.InstanceTypes = slices.Clone(ap.InstanceTypes)
			a.Restricted = true
		}
		if ap.MaxReplicas != nil {
			a.MaxReplicas = *ap.MaxReplicas
		}
		if ap.Tolerations != nil {
			a.Tolerations = cloneTolerations(ap.Tolerations)
		}
		if len(ap.Zones) > 0 {
			zonesOf[arch] = slices.Clone(ap.Zones)
		}
		eff.Architectures[arch] = a
	}
	for arch, a := range eff.Architectures {
		if z, ok := zonesOf[arch]; ok {
			a.Zones = z
		} else {
			a.Zones = slices.Clone(eff.Zones)
		}
		eff.Architectures[arch] = a
	}
	return eff
}

// Arch is the policy of arch. An architecture that neither the flags nor
// the object configure gets no instance type (no MachineSet can be created
// for it), no tolerations, DefaultMaxReplicas and the global zones.
func (p Policy) Arch(arch string) ArchPolicy {
	if a, ok := p.Architectures[arch]; ok {
		return a
	}
	return ArchPolicy{MaxReplicas: p.DefaultMaxReplicas, Zones: slices.Clone(p.Zones)}
}

// ArchNames are the architectures the policy names, sorted.
func (p Policy) ArchNames() []string {
	out := make([]string, 0, len(p.Architectures))
	for a := range p.Architectures {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

// AllowedInstanceType reports whether a build may ask for instance type t
// for arch, and which types it may ask for. t empty is always allowed (the
// default applies). allowed is nil when any type is allowed (the object
// lists no instance types for arch).
func AllowedInstanceType(eff Policy, arch, t string) (ok bool, allowed []string) {
	a := eff.Arch(arch)
	if !a.Restricted {
		return true, nil
	}
	allowed = slices.Clone(a.InstanceTypes)
	return t == "" || slices.Contains(a.InstanceTypes, t), allowed
}

// InstanceTypes are the instance types to try, in order, for a MachineSet
// of arch that a build asked for with spec.capacity.instanceTypes
// (override, may be nil): the build's type alone when it asks for an
// allowed one, else the policy's list (default, then fallbacks). An error
// when the build asks for a type the policy does not allow (a build
// admitted before the policy changed, or without the admission policy
// installed): the controller must not create it.
func InstanceTypes(eff Policy, arch string, override map[string]string) ([]string, error) {
	t := override[arch]
	ok, allowed := AllowedInstanceType(eff, arch, t)
	if !ok {
		return nil, fmt.Errorf("spec.capacity.instanceTypes.%s %q is not allowed by the BuildCapacityPolicy %s: allowed for %s: %v",
			arch, t, v1alpha1.BuildCapacityPolicyName, arch, allowed)
	}
	if t != "" {
		return []string{t}, nil
	}
	return slices.Clone(eff.Arch(arch).InstanceTypes), nil
}

// NamespaceSelected reports whether the namespace with labels nsLabels is
// selected by the policy's namespaceSelector (every namespace when there
// is none).
func NamespaceSelected(eff Policy, nsLabels map[string]string) bool {
	if eff.Selector == nil {
		return true
	}
	return eff.Selector.Matches(labels.Set(nsLabels))
}

// ManagedAllowed reports whether a build with spec.capacity.policy Managed
// in a namespace with labels nsLabels may get MachineSets created or scaled
// up for arch, and why not: managed capacity disabled, the namespace not
// selected, or the architecture's maxReplicas 0.
func ManagedAllowed(eff Policy, nsLabels map[string]string, arch string) (bool, string) {
	switch {
	case !eff.ManagedCapacity:
		return false, "the BuildCapacityPolicy cluster sets managedCapacity Disabled"
	case !NamespaceSelected(eff, nsLabels):
		return false, "the namespace is not selected by spec.namespaceSelector of the BuildCapacityPolicy cluster"
	case eff.Arch(arch).MaxReplicas <= 0:
		return false, fmt.Sprintf("the BuildCapacityPolicy cluster sets maxReplicas 0 for %s", arch)
	}
	return true, ""
}

func duration(v, field string, problems *[]string) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		*problems = append(*problems, fmt.Sprintf("%s %q is not a positive duration; the operator's default applies", field, v))
		return 0, false
	}
	return d, true
}

func cloneTolerations(ts []corev1.Toleration) []corev1.Toleration {
	out := make([]corev1.Toleration, len(ts))
	for i := range ts {
		ts[i].DeepCopyInto(&out[i])
	}
	return out
}
