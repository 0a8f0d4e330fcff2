//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	rbacvalidation "k8s.io/component-helpers/auth/rbac/validation"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/multiarch-build/multiarch-build-operator/internal/pipeline"
	"github.com/multiarch-build/multiarch-build-operator/internal/testenv"
)

// The operator as OpenShift users run it: in its pod, as its ServiceAccount
// with the CSV's rules, on an API server with OpenShift's admission.

const operatorDeploy = "multiarch-build-controller-manager"

// operatorNS is where the operator runs: config/default's namespace, or the
// OLM-shaped install's (MAB_OPERATOR_MODE=olm, hack/cluster/operator.sh).
var operatorNS = func() string {
	if os.Getenv("MAB_OPERATOR_MODE") == "olm" {
		if ns := os.Getenv("MAB_OLM_NAMESPACE"); ns != "" {
			return ns
		}
		return "openshift-operators"
	}
	return testenv.OperatorNamespace
}()

// TestOpenShiftAdmissionIsOn proves the cluster admits like OpenShift where
// the operator meets it: OwnerReferencesPermissionEnforcement refuses a
// blockOwnerDeletion owner reference to a writer that may not update the
// owner's finalizers, and Pod Security enforces restricted on the operator's
// namespace.
func TestOpenShiftAdmissionIsOn(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "e2e-admission")
	owner := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "owner"}}
	if err := kc.Create(ctx, owner); err != nil {
		t.Fatal(err)
	}
	// a ServiceAccount that may create ConfigMaps, and nothing on finalizers
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "probe"}}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "probe"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"create"}}}}
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "probe"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "probe"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "probe", Namespace: ns}}}
	for _, o := range []client.Object{sa, role, rb} {
		if err := kc.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	restCfg, err := clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	restCfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + ns + ":probe"}
	probe, err := client.New(restCfg, client.Options{Scheme: kc.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	owned := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "owned",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: owner.Name, UID: owner.UID,
			Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}}}
	err = probe.Create(ctx, owned)
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "blockOwnerDeletion") {
		t.Fatalf("OwnerReferencesPermissionEnforcement is not on: creating a blockOwnerDeletion reference without finalizers rights gave %v", err)
	}
	t.Logf("OwnerReferencesPermissionEnforcement on: %v", err)

	nsObj := &corev1.Namespace{}
	if err := kc.Get(ctx, client.ObjectKey{Name: operatorNS}, nsObj); err != nil {
		t.Fatal(err)
	}
	if got := nsObj.Labels["pod-security.kubernetes.io/enforce"]; got != testenv.PodSecurityRestricted {
		t.Errorf("namespace %s enforces Pod Security %q, want restricted", operatorNS, got)
	}
	root := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: "root-probe"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: cfg.BaseImage}}}}
	err = kc.Create(ctx, root, client.DryRunAll)
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "restricted") {
		t.Fatalf("a pod that may run as root was not refused in %s: %v", operatorNS, err)
	}
	t.Logf("Pod Security restricted on %s: %v", operatorNS, err)
}

// operatorPod is the Running, Ready pod of the operator's Deployment.
func operatorPod(ctx context.Context) (*corev1.Pod, error) {
	pods := &corev1.PodList{}
	if err := kc.List(ctx, pods, client.InNamespace(operatorNS), client.MatchingLabels{"control-plane": "controller-manager"}); err != nil {
		return nil, err
	}
	var names []string
	for i := range pods.Items {
		p := &pods.Items[i]
		names = append(names, p.Name+"="+string(p.Status.Phase))
		if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
			continue
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				return p, nil
			}
		}
	}
	return nil, fmt.Errorf("no Ready operator pod in %s: %v", operatorNS, names)
}

// TestOperatorRunsInClusterAsItsCSVIdentity: the operator is the Deployment
// of config/default, restricted, running as its ServiceAccount, and the
// rules bound to that ServiceAccount in the cluster are exactly the CSV's.
func TestOperatorRunsInClusterAsItsCSVIdentity(t *testing.T) {
	ctx := context.Background()
	d := &appsv1.Deployment{}
	if err := kc.Get(ctx, client.ObjectKey{Namespace: operatorNS, Name: operatorDeploy}, d); err != nil {
		t.Fatalf("the operator's Deployment: %v", err)
	}
	pod, err := operatorPod(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sa := pod.Spec.ServiceAccountName
	c := pod.Spec.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("manager container security context %+v: want a read-only root filesystem and no privilege escalation", sc)
	}
	t.Logf("operator pod %s/%s on node %s, image %s, ServiceAccount %s", pod.Namespace, pod.Name, pod.Spec.NodeName, c.Image, sa)

	csv, err := testenv.CSV()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, p := range append(csv.Spec.InstallStrategy.StrategySpec.ClusterPermissions, csv.Spec.InstallStrategy.StrategySpec.Permissions...) {
		if p.ServiceAccountName != sa {
			t.Errorf("the CSV grants to %s, the pod runs as %s", p.ServiceAccountName, sa)
		}
		for _, r := range p.Rules {
			for _, a := range rbacvalidation.BreakdownRule(r) {
				want[testenv.AtomString(a)] = true
			}
		}
	}
	got := map[string]bool{}
	add := func(rules []rbacv1.PolicyRule) {
		for _, r := range rules {
			for _, a := range rbacvalidation.BreakdownRule(r) {
				got[testenv.AtomString(a)] = true
			}
		}
	}
	isOperator := func(subjects []rbacv1.Subject) bool {
		for _, s := range subjects {
			if s.Kind == rbacv1.ServiceAccountKind && s.Name == sa && s.Namespace == operatorNS {
				return true
			}
		}
		return false
	}
	crbs := &rbacv1.ClusterRoleBindingList{}
	if err := kc.List(ctx, crbs); err != nil {
		t.Fatal(err)
	}
	for _, b := range crbs.Items {
		if isOperator(b.Subjects) {
			cr := &rbacv1.ClusterRole{}
			if err := kc.Get(ctx, client.ObjectKey{Name: b.RoleRef.Name}, cr); err != nil {
				t.Fatal(err)
			}
			add(cr.Rules)
		}
	}
	rbs := &rbacv1.RoleBindingList{}
	if err := kc.List(ctx, rbs); err != nil {
		t.Fatal(err)
	}
	for _, b := range rbs.Items {
		if !isOperator(b.Subjects) {
			continue
		}
		if b.Namespace != operatorNS {
			t.Errorf("RoleBinding %s/%s grants the operator rights outside its namespace", b.Namespace, b.Name)
		}
		r := &rbacv1.Role{}
		if err := kc.Get(ctx, client.ObjectKey{Namespace: b.Namespace, Name: b.RoleRef.Name}, r); err != nil {
			t.Fatal(err)
		}
		add(r.Rules)
	}
	var extra, lacking []string
	for k := range got {
		if !want[k] {
			extra = append(extra, k)
		}
	}
	for k := range want {
		if !got[k] {
			lacking = append(lacking, k)
		}
	}
	sort.Strings(extra)
	sort.Strings(lacking)
	if len(extra)+len(lacking) > 0 {
		t.Errorf("the operator's ServiceAccount holds grants the CSV does not give: %v; lacks grants the CSV gives: %v", extra, lacking)
	}
	t.Logf("ServiceAccount %s/%s holds exactly the CSV's %d grants (no cluster-admin)", operatorNS, sa, len(got))
}

// TestOperatorPodDeletedMidBuild: the operator's pod is deleted while a
// build's architectures are building; the Deployment's next pod takes over
// (after the leader lease) and the build ends Ready with one PipelineRun and
// the digest the registry serves.
func TestOperatorPodDeletedMidBuild(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := gitRepo(t, "e2e-operator-restart", map[string]string{
		"Containerfile": "FROM " + cfg.BaseImage + "\nRUN sleep 8 && uname -m > /built-on\n",
	})
	ns := namespace(t, "e2e-restart")
	b := newBuild(ns, "survives", url, "e2e/restart")
	deleted := make(chan string, 1)
	go func() {
		defer close(deleted)
		deadline := time.Now().Add(10 * time.Minute)
		for time.Now().Before(deadline) {
			trs := &tektonv1.TaskRunList{}
			if err := kc.List(ctx, trs, client.InNamespace(ns)); err == nil {
				for _, tr := range trs.Items {
					if tr.Labels[pipeline.LabelArch] != "" && tr.Status.PodName != "" {
						pod, err := operatorPod(ctx)
						if err != nil {
							t.Errorf("before deleting: %v", err)
							return
						}
						if err := kc.Delete(ctx, pod); err != nil {
							t.Errorf("delete operator pod: %v", err)
							return
						}
						t.Logf("deleted operator pod %s while TaskRun %s runs", pod.Name, tr.Name)
						deleted <- pod.Name
						return
					}
				}
			}
			time.Sleep(500 * time.Millisecond)
		}
		t.Errorf("no architecture TaskRun got a pod in time")
	}()
	res := runBuild(t, b, v1alpha1.PhaseSucceeded)
	old, ok := <-deleted
	if !ok || old == "" {
		t.Fatal("the operator pod was not deleted during the build")
	}
	pod, err := operatorPod(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if pod.Name == old {
		t.Errorf("the operator pod %s is the one deleted", old)
	}
	runs := &tektonv1.PipelineRunList{}
	if err := kc.List(ctx, runs, client.InNamespace(ns), client.MatchingLabels{pipeline.LabelBuild: b.Name}); err != nil {
		t.Fatal(err)
	}
	if len(runs.Items) != 1 {
		var names []string
		for _, r := range runs.Items {
			names = append(names, r.Name)
		}
		t.Errorf("%d PipelineRuns after the operator's restart, want 1: %v", len(runs.Items), names)
	}
	checkPushed(t, res)
	t.Logf("the build ended %s with %d PipelineRun and digest %s; operator pod %s replaced by %s", res.build.Status.Phase, len(runs.Items), res.build.Status.Digest, old, pod.Name)
}
