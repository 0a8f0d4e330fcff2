package capacity

import (
	"fmt"
	"sort"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
)

// NodeUsable says whether build pods of the node's architecture, carrying the
// tolerations configured for it, can be scheduled there now: the node is
// Ready, not cordoned, and every NoSchedule or NoExecute taint is tolerated.
// When it is not, why says which of these failed.
func NodeUsable(node *corev1.Node, tolerations map[string][]corev1.Toleration) (ok bool, why string) {
	arch := node.Labels[LabelArchNode]
	if arch == "" {
		return false, "no " + LabelArchNode + " label"
	}
	if node.DeletionTimestamp != nil {
		return false, "being deleted"
	}
	ready := false
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			ready = c.Status == corev1.ConditionTrue
		}
	}
	if !ready {
		return false, "not Ready"
	}
	if node.Spec.Unschedulable {
		return false, "unschedulable (cordoned)"
	}
	for i := range node.Spec.Taints {
		taint := &node.Spec.Taints[i]
		if taint.Effect != corev1.TaintEffectNoSchedule && taint.Effect != corev1.TaintEffectNoExecute {
			continue
		}
		if !tolerated(taint, tolerations[arch]) {
			return false, fmt.Sprintf("taint %s:%s not tolerated", taint.Key, taint.Effect)
		}
	}
	return true, ""
}

func tolerated(taint *corev1.Taint, tolerations []corev1.Toleration) bool {
	for i := range tolerations {
		if tolerations[i].ToleratesTaint(logr.Discard(), taint, false) {
			return true
		}
	}
	return false
}

// UsableNodes groups the names of usable nodes by architecture, sorted.
func UsableNodes(nodes []corev1.Node, tolerations map[string][]corev1.Toleration) map[string][]string {
	out := map[string][]string{}
	for i := range nodes {
		if ok, _ := NodeUsable(&nodes[i], tolerations); ok {
			a := nodes[i].Labels[LabelArchNode]
			out[a] = append(out[a], nodes[i].Name)
		}
	}
	for _, names := range out {
		sort.Strings(names)
	}
	return out
}

// HostArch is the architecture of the control plane (the one the cluster was
// installed with), or of most nodes when no node has a control-plane role;
// amd64 when there are no nodes.
func HostArch(nodes []corev1.Node) string {
	count := map[string]int{}
	for i := range nodes {
		n := &nodes[i]
		a := n.Labels[LabelArchNode]
		if a == "" {
			continue
		}
		if _, ok := n.Labels[LabelNodeRoleMaster]; ok {
			count[a] += 1000
		} else if _, ok := n.Labels[LabelNodeRoleControl]; ok {
			count[a] += 1000
		} else {
			count[a]++
		}
	}
	best, bestN := "amd64", 0
	for a, c := range count {
		if c > bestN || (c == bestN && a < best) {
			best, bestN = a, c
		}
	}
	return best
}
