package testenv

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	operatorsv1alpha1 "github.com/operator-framework/api/pkg/operators/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	rbacvalidation "k8s.io/component-helpers/auth/rbac/validation"
)

// OperatorNamespace is where the operator runs in tests: config/default's
// namespace, with Pod Security "restricted" enforced as on OpenShift.
const OperatorNamespace = "multiarch-build-system"

// Pod Security levels. OpenShift's label syncer sets a namespace's level from
// the most privileged SCC its ServiceAccounts may use: restricted-v2 gives
// "restricted"; the builder's SCC (any UID, SETFCAP, no privileged
// container, no host access) gives "baseline", since baseline admits root
// and SETFCAP but nothing privileged.
const (
	PodSecurityRestricted = "restricted"
	PodSecurityBaseline   = "baseline"
)

// PodSecurityLabels are the namespace labels Pod Security admission enforces.
func PodSecurityLabels(level string) map[string]string {
	return map[string]string{
		"pod-security.kubernetes.io/enforce": level,
		"pod-security.kubernetes.io/audit":   level,
		"pod-security.kubernetes.io/warn":    level,
	}
}

// CSV is the operator's ClusterServiceVersion in bundle/manifests, read with
// operator-framework/api's types.
func CSV() (*operatorsv1alpha1.ClusterServiceVersion, error) {
	files, err := filepath.Glob(filepath.Join(RepoRoot(), "bundle", "manifests", "*.clusterserviceversion.yaml"))
	if err != nil || len(files) != 1 {
		return nil, fmt.Errorf("want one CSV in bundle/manifests, found %v (%v)", files, err)
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		return nil, err
	}
	csv := &operatorsv1alpha1.ClusterServiceVersion{}
	if err := utilyaml.Unmarshal(data, csv); err != nil {
		return nil, fmt.Errorf("decode %s: %w", files[0], err)
	}
	return csv, nil
}

// Identity is the operator's ServiceAccount with exactly the rules of the
// bundle's CSV, installed as OLM installs them for an AllNamespaces
// OperatorGroup: a ClusterRole and ClusterRoleBinding per clusterPermissions
// entry, a Role and RoleBinding in the operator namespace per permissions
// entry. Config impersonates that ServiceAccount, so every request of a
// manager built on it is authorized, and admitted (OwnerReferences
// PermissionEnforcement), as the installed operator's would be.
type Identity struct {
	Namespace, ServiceAccount string
	// ClusterRules and NamespaceRules are what the CSV grants.
	ClusterRules, NamespaceRules []rbacv1.PolicyRule
	// Usage records every request made through Config.
	Usage *Usage

	admin *rest.Config
}

// Config is a client config that acts as the operator's ServiceAccount and
// records its requests in Usage.
func (id *Identity) Config() *rest.Config {
	cfg := rest.CopyConfig(id.admin)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: serviceaccount.MakeUsername(id.Namespace, id.ServiceAccount),
		Groups:   append(serviceaccount.MakeGroupNames(id.Namespace), "system:authenticated"),
	}
	cfg.WrapTransport = id.Usage.wrap
	return cfg
}

var (
	identities   = map[*Env]*Identity{}
	identitiesMu sync.Mutex
)

// OperatorIdentity installs the CSV's identity into the API server once and
// returns it.
func (e *Env) OperatorIdentity() (*Identity, error) {
	identitiesMu.Lock()
	defer identitiesMu.Unlock()
	if id, ok := identities[e]; ok {
		return id, nil
	}
	csv, err := CSV()
	if err != nil {
		return nil, err
	}
	spec := csv.Spec.InstallStrategy.StrategySpec
	if len(spec.ClusterPermissions) != 1 || len(spec.Permissions) > 1 {
		return nil, fmt.Errorf("CSV %s: want one clusterPermissions entry and at most one permissions entry, found %d and %d", csv.Name, len(spec.ClusterPermissions), len(spec.Permissions))
	}
	id := &Identity{
		Namespace: OperatorNamespace, ServiceAccount: spec.ClusterPermissions[0].ServiceAccountName,
		ClusterRules: spec.ClusterPermissions[0].Rules, Usage: operatorUsage, admin: e.Config,
	}
	if len(spec.Permissions) == 1 {
		if spec.Permissions[0].ServiceAccountName != id.ServiceAccount {
			return nil, fmt.Errorf("CSV %s: permissions and clusterPermissions name different ServiceAccounts", csv.Name)
		}
		id.NamespaceRules = spec.Permissions[0].Rules
	}
	if err := e.install(id, csv.Name+"-"+id.ServiceAccount); err != nil {
		return nil, err
	}
	identities[e] = id
	return id, nil
}

// InClusterGrant is a grant of the CSV that only the operator running in its
// pod uses: envtest managers run without leader election and with metrics
// off. The e2e tier runs it so and checks, from the API server's audit log,
// that the grants marked E2E were used and that nothing was refused.
type InClusterGrant struct {
	Why string
	// E2E: every e2e run uses it (others depend on timing, such as an
	// event series).
	E2E bool
}

// GrantsUsedInClusterOnly, by AtomString.
var GrantsUsedInClusterOnly = map[string]InClusterGrant{
	"create authentication.k8s.io/tokenreviews":        {"the metrics endpoint authenticates its scraper (controller-runtime filters.WithAuthenticationAndAuthorization)", true},
	"create authorization.k8s.io/subjectaccessreviews": {"the metrics endpoint authorizes its scraper", true},
	"get coordination.k8s.io/leases":                   {"leader election", true},
	"create coordination.k8s.io/leases":                {"leader election, the first time (later the lease exists)", false},
	"update coordination.k8s.io/leases":                {"leader election renews its lease", true},
	"create core/events":                               {"leader election's event on the lease (client-go resourcelock)", false},
	"patch core/events":                                {"the same leader election event again", false},
	"patch events.k8s.io/events":                       {"an event series (the same event on a build again within minutes)", false},
}

// GrantsUsedWithoutARequest are authorized during another request, so no
// request of their own shows them.
var GrantsUsedWithoutARequest = map[string]string{
	"update build.multiarch.io/multiarchbuilds/finalizers": "OwnerReferencesPermissionEnforcement checks it on every PVC and PipelineRun create (blockOwnerDeletion); TestOwnerReferencesPermissionEnforcementRefusalIsReported shows the create refused without it",
}

// GrantsNotSeenInEnvtest is both lists, with the reasons.
func GrantsNotSeenInEnvtest() map[string]string {
	out := map[string]string{}
	for k, v := range GrantsUsedInClusterOnly {
		out[k] = v.Why
	}
	for k, v := range GrantsUsedWithoutARequest {
		out[k] = v
	}
	return out
}

// operatorUsage is shared by every identity of the process, so that a test
// binary's API servers add up to one record.
var operatorUsage = &Usage{}

// OperatorUsage is what every identity of this process requested.
func OperatorUsage() *Usage { return operatorUsage }

// Kinds is how many distinct kinds of request were made.
func (u *Usage) Kinds() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.used)
}

// Identity installs a ServiceAccount of the operator namespace with these
// cluster-wide rules (a variant of the CSV's, for a story about a missing
// permission); its requests are recorded apart from the operator's.
func (e *Env) Identity(serviceAccount string, clusterRules []rbacv1.PolicyRule) (*Identity, error) {
	id := &Identity{Namespace: OperatorNamespace, ServiceAccount: serviceAccount, ClusterRules: clusterRules, Usage: &Usage{}, admin: e.Config}
	return id, e.install(id, "test-"+serviceAccount)
}

func (e *Env) install(id *Identity, name string) error {
	cs, err := kubernetes.NewForConfig(e.Config)
	if err != nil {
		return err
	}
	ctx := context.Background()
	subject := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: id.ServiceAccount, Namespace: id.Namespace}}
	for _, create := range []func() error{
		func() error {
			_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
				Name: id.Namespace, Labels: PodSecurityLabels(PodSecurityRestricted)}}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := cs.CoreV1().ServiceAccounts(id.Namespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: id.ServiceAccount}}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: id.ClusterRules}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
				RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name}, Subjects: subject}, metav1.CreateOptions{})
			return err
		},
		func() error {
			if id.NamespaceRules == nil {
				return nil
			}
			_, err := cs.RbacV1().Roles(id.Namespace).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: id.NamespaceRules}, metav1.CreateOptions{})
			if err != nil {
				return err
			}
			_, err = cs.RbacV1().RoleBindings(id.Namespace).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
				RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name}, Subjects: subject}, metav1.CreateOptions{})
			return err
		},
	} {
		if err := create(); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("install the CSV's identity: %w", err)
		}
	}
	return nil
}

// Use is one kind of request: what RBAC authorizes.
type Use struct {
	Verb, Group, Resource, Subresource, Namespace, Name string
}

// Resource is resource[/subresource].
func (u Use) resource() string {
	if u.Subresource != "" {
		return u.Resource + "/" + u.Subresource
	}
	return u.Resource
}

func (u Use) String() string {
	g := u.Group
	if g == "" {
		g = "core"
	}
	s := fmt.Sprintf("%s %s/%s", u.Verb, g, u.resource())
	if u.Name != "" {
		s += " name=" + u.Name
	}
	return s
}

// Usage records the requests made with an identity's config, the way the
// API server's request-info filter sees them, and the ones it refused.
type Usage struct {
	mu      sync.Mutex
	used    map[Use]int
	refused map[Use]string
}

var infoFactory = &request.RequestInfoFactory{APIPrefixes: sets.NewString("api", "apis"), GrouplessAPIPrefixes: sets.NewString("api")}

func (u *Usage) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		resp, err := rt.RoundTrip(req)
		info, ierr := infoFactory.NewRequestInfo(req)
		if ierr != nil || !info.IsResourceRequest {
			return resp, err
		}
		use := Use{Verb: info.Verb, Group: info.APIGroup, Resource: info.Resource, Subresource: info.Subresource, Namespace: info.Namespace, Name: info.Name}
		u.mu.Lock()
		defer u.mu.Unlock()
		if u.used == nil {
			u.used, u.refused = map[Use]int{}, map[Use]string{}
		}
		u.used[use]++
		if use.Verb == "watch" && req.URL.Query().Get("sendInitialEvents") == "true" {
			// A watch-list (client-go's WatchListClient) is the informer's
			// list; servers without it get a plain list instead.
			list := use
			list.Verb = "list"
			u.used[list]++
		}
		if err == nil && resp.StatusCode == http.StatusForbidden {
			u.refused[use] = resp.Status
		}
		return resp, err
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// Refused lists the requests the API server answered 403: a permission the
// operator needs and its CSV lacks (or an admission refusal).
func (u *Usage) Refused() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []string
	for use := range u.refused {
		out = append(out, use.String())
	}
	sort.Strings(out)
	return out
}

// Unused lists each granted (group, resource, verb, name) that no recorded
// request used, minus those in exercisedElsewhere (atomic rules that only the
// in-cluster operator exercises, with the reason). A "bind" grant counts as
// used when a RoleBinding was created.
func (u *Usage) Unused(granted []rbacv1.PolicyRule, exercisedElsewhere map[string]string) []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []string
	for _, rule := range granted {
		for _, atom := range rbacvalidation.BreakdownRule(rule) {
			key := AtomString(atom)
			if _, ok := exercisedElsewhere[key]; ok {
				continue
			}
			used := false
			for use := range u.used {
				if atomCovers(atom, use) {
					used = true
					break
				}
			}
			if !used {
				out = append(out, key)
			}
		}
	}
	sort.Strings(out)
	return out
}

// AtomString names one broken-down rule: "verb group/resource[ name]".
func AtomString(r rbacv1.PolicyRule) string {
	g := r.APIGroups[0]
	if g == "" {
		g = "core"
	}
	s := fmt.Sprintf("%s %s/%s", r.Verbs[0], g, r.Resources[0])
	if len(r.ResourceNames) > 0 {
		s += " name=" + strings.Join(r.ResourceNames, ",")
	}
	return s
}

func atomCovers(atom rbacv1.PolicyRule, use Use) bool {
	if len(atom.APIGroups) == 0 || len(atom.Resources) == 0 || len(atom.Verbs) == 0 {
		return false
	}
	verb, resource := atom.Verbs[0], atom.Resources[0]
	if verb == "bind" && resource == "clusterroles" {
		return use.Verb == "create" && use.Group == rbacv1.GroupName && use.Resource == "rolebindings"
	}
	if atom.APIGroups[0] != use.Group || resource != use.resource() || verb != use.Verb {
		return false
	}
	if len(atom.ResourceNames) > 0 {
		// list and watch with a name come as a metadata.name field selector,
		// which the request-info filter also turns into the name.
		return use.Name != "" && atom.ResourceNames[0] == use.Name
	}
	return true
}
