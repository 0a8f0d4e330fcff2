package main

// The simulator's decisions, from values only (no client): its ConfigMap,
// the architecture of a MachineSet, names and addresses of simulated
// instances, the AWS error texts, which Machines a scale-down deletes.

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"sort"
	"strings"
	"time"

	machinev1beta1 "github.com/openshift/api/machine/v1beta1"

	"github.com/multiarch-build/multiarch-build-operator/internal/capacity"
)

// ConfigMapName is the ConfigMap in the Machine API namespace that tells
// the simulator how to behave; it is read on every reconcile.
const ConfigMapName = "machine-sim"

// Keys of the machine-sim ConfigMap.
const (
	// KeyBootDelay: how long an instance takes from launch to its kubelet
	// starting (a Go duration; default DefaultBootDelay).
	KeyBootDelay = "bootDelay"
	// KeyUnsupported: "type[@zone], ..." whose launch EC2 refuses with 400
	// Unsupported: the Machine goes Failed, errorReason InvalidConfiguration.
	KeyUnsupported = "unsupported"
	// KeyInsufficientCapacity: "type[@zone], ..." whose launch EC2 refuses
	// with 500 InsufficientInstanceCapacity: the Machine stays Provisioning
	// and the create is retried (a CreateError is not terminal).
	KeyInsufficientCapacity = "insufficientCapacity"
	// KeyNoNode: "type[@zone], ..." whose instances run but never join: the
	// Machine stays Provisioned without a node.
	KeyNoNode = "noNode"
)

// DefaultBootDelay is the boot time when the ConfigMap does not say.
const DefaultBootDelay = 10 * time.Second

// Match is one entry of a type[@zone] list; an empty Zone matches every zone.
type Match struct{ InstanceType, Zone string }

// Config is the parsed machine-sim ConfigMap.
type Config struct {
	BootDelay            time.Duration
	Unsupported          []Match
	InsufficientCapacity []Match
	NoNode               []Match
}

// ParseConfig reads the ConfigMap's data (nil: defaults). Bad values are
// reported and replaced by the default, so a typo never stops the simulator.
func ParseConfig(data map[string]string) (Config, []error) {
	c := Config{BootDelay: DefaultBootDelay}
	var errs []error
	if v := strings.TrimSpace(data[KeyBootDelay]); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			errs = append(errs, fmt.Errorf("%s: %q is not a duration", KeyBootDelay, v))
		} else {
			c.BootDelay = d
		}
	}
	c.Unsupported = parseMatches(data[KeyUnsupported])
	c.InsufficientCapacity = parseMatches(data[KeyInsufficientCapacity])
	c.NoNode = parseMatches(data[KeyNoNode])
	for k := range data {
		switch k {
		case KeyBootDelay, KeyUnsupported, KeyInsufficientCapacity, KeyNoNode:
		default:
			errs = append(errs, fmt.Errorf("unknown key %q", k))
		}
	}
	return c, errs
}

func parseMatches(s string) []Match {
	var out []Match
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '\n' || r == ' ' }) {
		it, zone, _ := strings.Cut(f, "@")
		if it = strings.TrimSpace(it); it != "" {
			out = append(out, Match{InstanceType: it, Zone: strings.TrimSpace(zone)})
		}
	}
	return out
}

func matches(ms []Match, instanceType, zone string) bool {
	for _, m := range ms {
		if m.InstanceType == instanceType && (m.Zone == "" || m.Zone == zone) {
			return true
		}
	}
	return false
}

// Outcome is what launching an instance of a type in a zone does.
type Outcome int

const (
	// Launches: the instance runs and its node joins.
	Launches Outcome = iota
	// Unsupported: RunInstances fails with a 4xx; the Machine is Failed.
	Unsupported
	// InsufficientCapacity: RunInstances fails with a 5xx; retried.
	InsufficientCapacity
	// NeverJoins: the instance runs, no node ever registers.
	NeverJoins
)

// Launch is the outcome for instanceType in zone; the first matching key in
// the order unsupported, insufficientCapacity, noNode wins.
func (c Config) Launch(instanceType, zone string) Outcome {
	switch {
	case matches(c.Unsupported, instanceType, zone):
		return Unsupported
	case matches(c.InsufficientCapacity, instanceType, zone):
		return InsufficientCapacity
	case matches(c.NoNode, instanceType, zone):
		return NeverJoins
	}
	return Launches
}

// The AWS texts below are what OpenShift writes, from the sources of
// openshift/machine-api-provider-aws (pkg/actuators/machine/instances.go,
// launchInstance) and openshift/machine-api-operator
// (pkg/controller/machine/controller.go, updateStatus):
//
//   - RunInstances failing with an HTTP 4xx becomes
//     mapierrors.InvalidMachineConfiguration("error launching instance: %v",
//     reqErr.Message()); the machine controller sees Reason
//     InvalidConfiguration and sets phase Failed, status.errorReason
//     "InvalidConfiguration" and status.errorMessage to the MachineError's
//     Message (the AWS message without its code), and the annotation
//     machine.openshift.io/instance-state to "unknown".
//   - any other failure (InsufficientInstanceCapacity is an EC2 *server*
//     error, HTTP 500) becomes mapierrors.CreateMachine("error creating EC2
//     instance: %v", err), Reason CreateError: the machine controller does
//     NOT fail the Machine, it requeues and calls Create again; the text is
//     in providerStatus.conditions[MachineCreation] (False,
//     MachineCreationFailed) and in a FailedCreate event. status.errorReason
//     stays empty.
//
// The EC2 messages are those EC2 returns (quoted in OpenShift CI reports,
// e.g. openshift/release#34246 for InsufficientInstanceCapacity).

// UnsupportedMessage is status.errorMessage of a Machine whose instance type
// EC2 does not offer in zone (EC2 error Unsupported, HTTP 400).
func UnsupportedMessage(instanceType, zone string, otherZones []string) string {
	return fmt.Sprintf("error launching instance: Your requested instance type (%s) is not supported in your requested Availability Zone (%s). "+
		"Please retry your request by not specifying an Availability Zone or choosing %s.", instanceType, zone, strings.Join(otherZones, ", "))
}

// InsufficientCapacityMessage is the MachineCreation condition's message of a
// Machine whose launch EC2 refused for lack of capacity (HTTP 500).
func InsufficientCapacityMessage(instanceType, zone string, otherZones []string, requestID string) string {
	return fmt.Sprintf("error creating EC2 instance: InsufficientInstanceCapacity: We currently do not have sufficient %s capacity in the Availability Zone you requested (%s). "+
		"Our system will be working on provisioning additional capacity. You can currently get %s capacity by not specifying an Availability Zone in your request or choosing %s.\n"+
		"\tstatus code: 500, request id: %s", instanceType, zone, instanceType, strings.Join(otherZones, ", "), requestID)
}

// OtherZones are the region's zones but zone (eu-west-3 has a, b, c).
func OtherZones(region, zone string) []string {
	var out []string
	for _, z := range []string{"a", "b", "c"} {
		if region+z != zone {
			out = append(out, region+z)
		}
	}
	return out
}

// MachineSetArch is the architecture of the nodes of ms: the autoscaler
// labels annotation (or the operator's label), else the instance type
// (capacity.MachineSetArch); amd64 when nothing says.
func MachineSetArch(ms *machinev1beta1.MachineSet) string {
	if a, _ := capacity.MachineSetArch(ms); a != "" {
		return a
	}
	return "amd64"
}

// MachineArch is the architecture of a Machine from its instance type, for a
// Machine that has no MachineSet.
func MachineArch(cfg *machinev1beta1.AWSMachineProviderConfig) string {
	if cfg != nil {
		if a := capacity.InstanceTypeArch(cfg.InstanceType); a != "" {
			return a
		}
	}
	return "amd64"
}

// InstanceShape is what EC2's DescribeInstanceTypes says of a type, for the
// MachineSet annotations the AWS MachineSet controller writes.
type InstanceShape struct {
	VCPU, MemoryMb, GPU int
}

// instanceShapes: the types the operator and its tests use (others get no
// scale-from-zero annotations, as an unknown type does on AWS).
var instanceShapes = map[string]InstanceShape{
	"m5.xlarge": {4, 16384, 0}, "m5.2xlarge": {8, 32768, 0}, "m5a.xlarge": {4, 16384, 0}, "m5a.2xlarge": {8, 32768, 0},
	"m6i.xlarge": {4, 16384, 0}, "m6i.2xlarge": {8, 32768, 0}, "m6a.xlarge": {4, 16384, 0}, "m7i.xlarge": {4, 16384, 0},
	"m6g.large": {2, 8192, 0}, "m6g.xlarge": {4, 16384, 0}, "m6g.2xlarge": {8, 32768, 0}, "m6g.4xlarge": {16, 65536, 0},
	"m7g.xlarge": {4, 16384, 0}, "m7g.2xlarge": {8, 32768, 0}, "c6g.xlarge": {4, 8192, 0}, "c7g.2xlarge": {8, 16384, 0},
	"t4g.xlarge": {4, 16384, 0}, "r6g.xlarge": {4, 32768, 0},
}

// Shape of instanceType; false when unknown.
func Shape(instanceType string) (InstanceShape, bool) {
	s, ok := instanceShapes[instanceType]
	return s, ok
}

// MachineSetAnnotations are the annotations the AWS MachineSet controller
// keeps on a MachineSet (scale from zero): vCPU, memoryMb, GPU and
// kubernetes.io/arch in the autoscaler labels, an existing arch entry kept.
// Returns the changed map, or nil when nothing changes.
func MachineSetAnnotations(ann map[string]string, instanceType, arch string) map[string]string {
	want := map[string]string{}
	for k, v := range ann {
		want[k] = v
	}
	if s, ok := Shape(instanceType); ok {
		want[capacity.AnnotationVCPU] = fmt.Sprint(s.VCPU)
		want[capacity.AnnotationMemoryMb] = fmt.Sprint(s.MemoryMb)
		want[capacity.AnnotationGPU] = fmt.Sprint(s.GPU)
	}
	labels := want[capacity.AnnotationAutoscalerLabels]
	if _, ok := capacity.ParseLabelList(labels)[capacity.LabelArchNode]; !ok {
		want[capacity.AnnotationAutoscalerLabels] = capacity.SetLabelInList(labels, capacity.LabelArchNode, arch)
	}
	if len(want) == len(ann) {
		same := true
		for k, v := range want {
			if ann[k] != v {
				same = false
				break
			}
		}
		if same {
			return nil
		}
	}
	return want
}

// ToDelete picks n Machines to delete on scale-down, as the MachineSet
// controller's delete policies do: first those marked with the
// machine.openshift.io/delete-machine annotation, then those that have no
// node (Failed, still provisioning), then the newest (policy Newest, and
// Random, which the simulator makes deterministic) or the oldest (Oldest).
// Machines already being deleted are not candidates.
func ToDelete(machines []machinev1beta1.Machine, n int, policy string) []machinev1beta1.Machine {
	var cands []machinev1beta1.Machine
	for _, m := range machines {
		if m.DeletionTimestamp == nil {
			cands = append(cands, m)
		}
	}
	prio := func(m *machinev1beta1.Machine) int {
		switch {
		case m.Annotations[AnnotationDeleteMachine] != "" || m.Annotations[annotationOldDeleteMachine] != "":
			return 0
		case m.Status.NodeRef == nil:
			return 1
		}
		return 2
	}
	sort.SliceStable(cands, func(i, j int) bool {
		pi, pj := prio(&cands[i]), prio(&cands[j])
		if pi != pj {
			return pi < pj
		}
		ti, tj := cands[i].CreationTimestamp.Time, cands[j].CreationTimestamp.Time
		if !ti.Equal(tj) {
			if policy == string(machinev1beta1.OldestMachineSetDeletePolicy) {
				return ti.Before(tj)
			}
			return ti.After(tj)
		}
		return cands[i].Name > cands[j].Name
	})
	if n > len(cands) {
		n = len(cands)
	}
	if n < 0 {
		n = 0
	}
	return cands[:n]
}

// Annotations the real controllers use.
const (
	AnnotationDeleteMachine    = "machine.openshift.io/delete-machine"
	annotationOldDeleteMachine = "machine.openshift.io/cluster-api-delete-machine"
	AnnotationInstanceState    = "machine.openshift.io/instance-state"
	AnnotationNodeMachine      = "machine.openshift.io/machine"
	AnnotationExcludeDraining  = "machine.openshift.io/exclude-node-draining"
)

// Annotations of the simulator itself on a Machine.
const (
	// AnnotationSlot: the node slot (hack/cluster NODES) the instance runs in.
	AnnotationSlot = "machinesim.mab.local/node-slot"
	// AnnotationNodeName: the node name the instance registers as.
	AnnotationNodeName = "machinesim.mab.local/node-name"
)

// InstanceID is a random EC2 instance id (i- and 17 hex digits).
func InstanceID() string {
	b := make([]byte, 9)
	_, _ = rand.Read(b)
	return "i-" + hex.EncodeToString(b)[:17]
}

// RequestID is a random AWS request id.
func RequestID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// PrivateIP is a random address in the zone's private subnet as the
// installer lays out a VPC of 10.0.0.0/16: 10.0.128.0/20 for the region's
// first zone, 10.0.144.0/20 for the second, 10.0.160.0/20 for the third.
func PrivateIP(zone string) string {
	idx := 0
	if zone != "" {
		idx = int(zone[len(zone)-1]-'a') % 3
	}
	n, _ := rand.Int(rand.Reader, big.NewInt(16*256-6))
	v := int(n.Int64()) + 5 // AWS reserves the first four addresses
	return fmt.Sprintf("10.0.%d.%d", 128+16*idx+v/256, v%256)
}

// PrivateDNSName is EC2's private DNS name of ip in region, which is also
// the node name on OpenShift/AWS.
func PrivateDNSName(ip, region string) string {
	return "ip-" + strings.ReplaceAll(ip, ".", "-") + "." + region + ".compute.internal"
}

// ProviderID is the node's spec.providerID for an instance.
func ProviderID(zone, instanceID string) string {
	return "aws:///" + zone + "/" + instanceID
}
