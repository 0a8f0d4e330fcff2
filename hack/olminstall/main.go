// Command olminstall installs an operator bundle the way OLM (v0) does for a
// ClusterServiceVersion in an AllNamespaces OperatorGroup, without OLM: the
// test tier uses it because operator-lifecycle-manager cannot be built here.
//
// What it creates, read from the bundle with operator-framework/api's types:
//   - the bundle's CRDs (kept on uninstall, as OLM keeps them);
//   - the bundle's other objects (ClusterRoles, the metrics Service, ...),
//     namespaced ones in the operator's namespace;
//   - the ServiceAccount named by the install strategy's permissions;
//   - per `clusterPermissions` entry a ClusterRole and ClusterRoleBinding, per
//     `permissions` entry a Role and RoleBinding in the operator's namespace,
//     named as OLM names them, <csv>-<serviceaccount>-<hash>, and labelled
//     olm.owner, olm.owner.kind, olm.owner.namespace and olm.permissions.hash
//     (OLM's hash of the name is its own deep-hash; this one is an FNV hash of
//     the same content, so the suffixes differ and nothing may depend on them);
//   - the install strategy's Deployments, with what OLM adds: the CSV's
//     annotations and the OperatorGroup's (olm.operatorGroup,
//     olm.operatorNamespace, olm.targetNamespaces="" for AllNamespaces) on the
//     pod template, the olm.managed and owner labels, the
//     OPERATOR_CONDITION_NAME variable in every container, revisionHistoryLimit
//     1 and the olm.deployment-spec-hash label;
//   - image references rewritten by -image-map FROM=TO, as a mirror
//     (ImageDigestMirrorSet) or a disconnected install resolves the CSV's
//     relatedImages: the Deployment's images and every env value naming one.
//
// Installing a second bundle version over the first does what an OLM upgrade
// does to the cluster: the new CSV's Deployment replaces the old one in place
// (same name, a rolling update), then the old CSV's RBAC is deleted.
//
// What OLM does that this does not: catalogs (CatalogSource, registry pods,
// package manifests), Subscriptions, InstallPlans and their approval, the
// upgrade graph (replaces/skips/skipRange are not checked), OperatorGroups
// and their target-namespace bookkeeping (AllNamespaces only), the CSV object
// itself and its phases and conditions, OperatorConditions, owner references
// to the CSV (there is no CSV object to own anything), webhooks and
// APIServices from the CSV, cluster proxy injection into the Deployment, and
// requirement checks (e.g. that the CRDs' versions are served).
//
//	go run ./hack/olminstall -kubeconfig K -bundle bundle -namespace openshift-operators \
//	    -image-map quay.io/org/op:v1=registry.local/op@sha256:... [-uninstall]
package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"hash/fnv"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	operatorsv1alpha1 "github.com/operator-framework/api/pkg/operators/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/rand"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const fieldOwner = "olm-shaped-install"

type imageMap map[string]string

func (m imageMap) String() string { return fmt.Sprint(map[string]string(m)) }
func (m imageMap) Set(v string) error {
	from, to, ok := strings.Cut(v, "=")
	if !ok || from == "" || to == "" {
		return fmt.Errorf("want FROM=TO, got %q", v)
	}
	m[from] = to
	return nil
}

func main() {
	var (
		kubeconfig = flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig of the cluster (a cluster admin, as OLM is)")
		bundleDir  = flag.String("bundle", "bundle", "bundle directory (manifests/ inside)")
		namespace  = flag.String("namespace", "openshift-operators", "the operator's namespace (its AllNamespaces OperatorGroup's)")
		group      = flag.String("operator-group", "global-operators", "name of the OperatorGroup the annotations name")
		uninstall  = flag.Bool("uninstall", false, "delete the Deployment, RBAC and ServiceAccount of every CSV installed in the namespace (CRDs stay)")
		timeout    = flag.Duration("timeout", 3*time.Minute, "how long to wait for the Deployment to be available")
		images     = imageMap{}
		related    = imageMap{}
	)
	flag.Var(images, "image-map", "FROM=TO: rewrite image reference FROM to TO; repeatable")
	flag.Var(related, "related", "NAME=TO: rewrite the image of the CSV's relatedImages entry NAME to TO; repeatable")
	flag.Parse()
	ctx := context.Background()
	c, err := newClient(*kubeconfig)
	if err != nil {
		fail(err)
	}
	if *uninstall {
		if err := uninstallAll(ctx, c, *namespace); err != nil {
			fail(err)
		}
		return
	}
	b, err := readBundle(filepath.Join(*bundleDir, "manifests"))
	if err != nil {
		fail(err)
	}
	for name, to := range related {
		found := false
		for _, ri := range b.csv.Spec.RelatedImages {
			if ri.Name == name {
				images[ri.Image], found = to, true
			}
		}
		if !found {
			fail(fmt.Errorf("-related %s: the CSV has no relatedImages entry %q", name, name))
		}
	}
	start := time.Now()
	if err := install(ctx, c, b, *namespace, *group, images, *timeout); err != nil {
		fail(err)
	}
	fmt.Fprintf(os.Stderr, "olminstall: %s installed in %s (AllNamespaces) in %s\n", b.csv.Name, *namespace, time.Since(start).Round(time.Second))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "olminstall: ERROR:", err)
	os.Exit(1)
}

func newClient(kubeconfig string) (client.Client, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme} {
		if err := add(s); err != nil {
			return nil, err
		}
	}
	return client.New(cfg, client.Options{Scheme: s})
}

// bundle is a bundle's manifests: its CSV and every other object.
type bundle struct {
	csv    *operatorsv1alpha1.ClusterServiceVersion
	crds   []*unstructured.Unstructured
	others []*unstructured.Unstructured
}

func readBundle(dir string) (*bundle, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	b := &bundle{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		u := &unstructured.Unstructured{}
		if err := utilyaml.Unmarshal(data, &u.Object); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		switch u.GetKind() {
		case operatorsv1alpha1.ClusterServiceVersionKind:
			if b.csv != nil {
				return nil, fmt.Errorf("%s: a second CSV in the bundle", f)
			}
			b.csv = &operatorsv1alpha1.ClusterServiceVersion{}
			if err := utilyaml.Unmarshal(data, b.csv); err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
		case "CustomResourceDefinition":
			b.crds = append(b.crds, u)
		default:
			b.others = append(b.others, u)
		}
	}
	if b.csv == nil {
		return nil, fmt.Errorf("no ClusterServiceVersion in %s", dir)
	}
	if b.csv.Spec.InstallStrategy.StrategyName != operatorsv1alpha1.InstallStrategyNameDeployment {
		return nil, fmt.Errorf("CSV %s: install strategy %q, only %q is supported", b.csv.Name, b.csv.Spec.InstallStrategy.StrategyName, operatorsv1alpha1.InstallStrategyNameDeployment)
	}
	allNamespaces := false
	for _, m := range b.csv.Spec.InstallModes {
		allNamespaces = allNamespaces || (m.Type == operatorsv1alpha1.InstallModeTypeAllNamespaces && m.Supported)
	}
	if !allNamespaces {
		return nil, fmt.Errorf("CSV %s does not support the AllNamespaces install mode", b.csv.Name)
	}
	return b, nil
}

// ownerLabels are the labels OLM puts on what it creates for a CSV.
func ownerLabels(csv, namespace string) map[string]string {
	return map[string]string{"olm.owner": csv, "olm.owner.kind": operatorsv1alpha1.ClusterServiceVersionKind, "olm.owner.namespace": namespace}
}

// base62 of a SHA-224, as OLM's olm.permissions.hash label value.
func contentHash(v any) string {
	raw, _ := json.Marshal(v)
	sum := sha256.Sum224(raw)
	var i big.Int
	i.SetBytes(sum[:])
	return i.Text(62)
}

// permissionName is <csv>-<serviceaccount>-<hash>, at most 63 characters.
func permissionName(csv string, p operatorsv1alpha1.StrategyDeploymentPermissions) string {
	raw, _ := json.Marshal(struct {
		Name string                                          `json:"name"`
		P    operatorsv1alpha1.StrategyDeploymentPermissions `json:"permission"`
	}{csv, p})
	h := fnv.New32a()
	_, _ = h.Write(raw)
	suffix := rand.SafeEncodeString(fmt.Sprint(h.Sum32()))
	base := csv + "-" + p.ServiceAccountName
	if len(base)+1+len(suffix) > 63 {
		base = base[:63-len(suffix)-1]
	}
	return base + "-" + suffix
}

func apply(ctx context.Context, c client.Client, obj client.Object) error {
	// Server-side apply of a typed object needs its GVK set.
	gvk, err := c.GroupVersionKindFor(obj)
	if err != nil {
		return err
	}
	obj.GetObjectKind().SetGroupVersionKind(gvk)
	obj.SetManagedFields(nil)
	obj.SetResourceVersion("")
	//nolint:staticcheck // client.Apply on typed objects is what this tool needs
	if err := c.Patch(ctx, obj, client.Apply, client.FieldOwner(fieldOwner), client.ForceOwnership); err != nil {
		return fmt.Errorf("apply %s %s: %w", gvk.Kind, client.ObjectKeyFromObject(obj), err)
	}
	return nil
}

func install(ctx context.Context, c client.Client, b *bundle, ns, group string, images imageMap, timeout time.Duration) error {
	csv := b.csv.Name
	owner := ownerLabels(csv, ns)
	if err := c.Get(ctx, client.ObjectKey{Name: ns}, &corev1.Namespace{}); apierrors.IsNotFound(err) {
		// The operator's pod runs restricted; the namespace enforces it.
		nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{
			"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/warn": "restricted", "pod-security.kubernetes.io/audit": "restricted"}}}
		if err := c.Create(ctx, nsObj); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	for _, crd := range b.crds {
		if err := apply(ctx, c, crd.DeepCopy()); err != nil {
			return err
		}
	}
	for _, crd := range b.crds {
		if err := waitEstablished(ctx, c, crd.GetName()); err != nil {
			return err
		}
	}
	for _, o := range b.others {
		o = o.DeepCopy()
		if o.GetNamespace() == "" && namespaced(o.GetKind()) {
			o.SetNamespace(ns)
		}
		labels := o.GetLabels()
		if labels == nil {
			labels = map[string]string{}
		}
		for k, v := range owner {
			labels[k] = v
		}
		o.SetLabels(labels)
		if err := apply(ctx, c, o); err != nil {
			return err
		}
	}
	spec := b.csv.Spec.InstallStrategy.StrategySpec
	accounts := map[string]bool{}
	for _, p := range append(append([]operatorsv1alpha1.StrategyDeploymentPermissions{}, spec.Permissions...), spec.ClusterPermissions...) {
		if !accounts[p.ServiceAccountName] {
			accounts[p.ServiceAccountName] = true
			if err := apply(ctx, c, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: p.ServiceAccountName, Namespace: ns, Labels: owner}}); err != nil {
				return err
			}
		}
	}
	subject := func(sa string) []rbacv1.Subject {
		return []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: ns}}
	}
	withHash := func(v any) map[string]string {
		l := map[string]string{"olm.permissions.hash": contentHash(v)}
		for k, val := range owner {
			l[k] = val
		}
		return l
	}
	for _, p := range spec.Permissions {
		name := permissionName(csv, p)
		ref := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name}
		if err := apply(ctx, c, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: withHash(p.Rules)}, Rules: p.Rules}); err != nil {
			return err
		}
		if err := apply(ctx, c, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns,
			Labels: withHash(struct {
				RoleRef  rbacv1.RoleRef
				Subjects []rbacv1.Subject
			}{ref, subject(p.ServiceAccountName)})}, RoleRef: ref, Subjects: subject(p.ServiceAccountName)}); err != nil {
			return err
		}
	}
	for _, p := range spec.ClusterPermissions {
		name := permissionName(csv, p)
		ref := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name}
		if err := apply(ctx, c, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: withHash(p.Rules)}, Rules: p.Rules}); err != nil {
			return err
		}
		if err := apply(ctx, c, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name,
			Labels: withHash(struct {
				RoleRef  rbacv1.RoleRef
				Subjects []rbacv1.Subject
			}{ref, subject(p.ServiceAccountName)})}, RoleRef: ref, Subjects: subject(p.ServiceAccountName)}); err != nil {
			return err
		}
	}
	templateAnnotations := map[string]string{}
	for k, v := range b.csv.Annotations {
		templateAnnotations[k] = v
	}
	templateAnnotations["olm.operatorGroup"] = group
	templateAnnotations["olm.operatorNamespace"] = ns
	templateAnnotations["olm.targetNamespaces"] = "" // AllNamespaces
	var names []string
	for _, ds := range spec.DeploymentSpecs {
		d := deploymentFor(ds, ns, csv, owner, templateAnnotations, images)
		if err := apply(ctx, c, d); err != nil {
			return err
		}
		names = append(names, d.Name)
	}
	for _, name := range names {
		if err := waitAvailable(ctx, c, ns, name, timeout); err != nil {
			return err
		}
	}
	// An upgrade: the RBAC of the CSVs this one replaced goes once the new
	// Deployment runs.
	return deleteOwnedBy(ctx, c, ns, func(o string) bool { return o != csv })
}

func namespaced(kind string) bool {
	switch kind {
	case "ClusterRole", "ClusterRoleBinding", "PriorityClass", "CustomResourceDefinition":
		return false
	}
	return true
}

func deploymentFor(ds operatorsv1alpha1.StrategyDeploymentSpec, ns, csv string, owner, annotations map[string]string, images imageMap) *appsv1.Deployment {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: ds.Name, Namespace: ns, Labels: map[string]string{}}, Spec: *ds.Spec.DeepCopy()}
	for k, v := range ds.Label {
		d.Labels[k] = v
	}
	d.Labels["olm.managed"] = "true"
	for k, v := range owner {
		d.Labels[k] = v
	}
	tpl := &d.Spec.Template
	if tpl.Annotations == nil {
		tpl.Annotations = map[string]string{}
	}
	for k, v := range annotations {
		tpl.Annotations[k] = v
	}
	rewrite := func(s string) string {
		if to, ok := images[s]; ok {
			return to
		}
		return s
	}
	for _, cs := range [][]corev1.Container{tpl.Spec.InitContainers, tpl.Spec.Containers} {
		for i := range cs {
			cs[i].Image = rewrite(cs[i].Image)
			for j := range cs[i].Env {
				cs[i].Env[j].Value = rewrite(cs[i].Env[j].Value)
			}
			cs[i].Env = append(cs[i].Env, corev1.EnvVar{Name: "OPERATOR_CONDITION_NAME", Value: csv})
		}
	}
	d.Spec.RevisionHistoryLimit = ptr.To(int32(1))
	d.Labels["olm.deployment-spec-hash"] = rand.SafeEncodeString(contentHash(d.Spec)[:10])
	return d
}

func waitEstablished(ctx context.Context, c client.Client, name string) error {
	deadline := time.Now().Add(time.Minute)
	for {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := c.Get(ctx, client.ObjectKey{Name: name}, crd); err == nil {
			for _, cond := range crd.Status.Conditions {
				if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("CRD %s is not Established", name)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// waitAvailable waits until every replica runs the Deployment's latest
// template (the rollout of an upgrade is done).
func waitAvailable(ctx context.Context, c client.Client, ns, name string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		d := &appsv1.Deployment{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, d); err != nil {
			return err
		}
		want := ptr.Deref(d.Spec.Replicas, 1)
		st := d.Status
		if st.ObservedGeneration >= d.Generation && st.UpdatedReplicas == want && st.AvailableReplicas == want && st.Replicas == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("Deployment %s/%s not available after %s: %+v", ns, name, timeout, st)
		}
		time.Sleep(time.Second)
	}
}

// deleteOwnedBy deletes what was made for the CSVs of the namespace that
// match: Deployments, RBAC, ServiceAccounts and the bundle's namespaced and
// cluster-scoped objects (they carry the same owner labels).
func deleteOwnedBy(ctx context.Context, c client.Client, ns string, match func(csv string) bool) error {
	lists := []struct {
		list       client.ObjectList
		namespaced bool
	}{
		{&appsv1.DeploymentList{}, true},
		{&rbacv1.RoleBindingList{}, true},
		{&rbacv1.RoleList{}, true},
		{&rbacv1.ClusterRoleBindingList{}, false},
		{&rbacv1.ClusterRoleList{}, false},
		{&corev1.ServiceAccountList{}, true},
		{&corev1.ServiceList{}, true}, // the bundle's metrics Service
	}
	for _, l := range lists {
		opts := []client.ListOption{client.MatchingLabels{"olm.owner.kind": operatorsv1alpha1.ClusterServiceVersionKind, "olm.owner.namespace": ns}}
		if l.namespaced {
			opts = append(opts, client.InNamespace(ns))
		}
		if err := c.List(ctx, l.list, opts...); err != nil {
			return err
		}
		items, err := apimeta.ExtractList(l.list)
		if err != nil {
			return err
		}
		for _, item := range items {
			o := item.(client.Object)
			if !match(o.GetLabels()["olm.owner"]) {
				continue
			}
			if err := c.Delete(ctx, o); client.IgnoreNotFound(err) != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "olminstall: deleted %T %s of %s\n", o, client.ObjectKeyFromObject(o), o.GetLabels()["olm.owner"])
		}
	}
	return nil
}

func uninstallAll(ctx context.Context, c client.Client, ns string) error {
	return deleteOwnedBy(ctx, c, ns, func(string) bool { return true })
}
