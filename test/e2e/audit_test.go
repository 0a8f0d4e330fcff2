//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/multiarch-build/multiarch-build-operator/internal/testenv"
)

// TestMetricsEndpointServesAuthenticatedScrapers scrapes the in-cluster
// operator's HTTPS metrics endpoint as Prometheus would: refused without a
// token (401) and with a token not bound to the metrics-reader role (403),
// served with one that is. The operator checks each token with a
// TokenReview and a SubjectAccessReview, with its CSV's rules.
func TestMetricsEndpointServesAuthenticatedScrapers(t *testing.T) {
	ctx := context.Background()
	pod, err := operatorPod(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ns := namespace(t, "e2e-metrics")
	token := func(name string, bind bool) string {
		t.Helper()
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		if err := kc.Create(ctx, sa); err != nil {
			t.Fatal(err)
		}
		if bind {
			crb := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: ns + "-" + name},
				RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "multiarch-build-metrics-reader"},
				Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: ns}}}
			if err := kc.Create(ctx, crb); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = kc.Delete(context.Background(), crb) })
		}
		tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name,
			&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	scraper, stranger := token("scraper", true), token("stranger", false)
	// the operator's serving certificate is self-signed (controller-runtime's default)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	url := fmt.Sprintf("https://%s:8443/metrics", pod.Status.PodIP)
	get := func(tok string) (int, string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	var code int
	var body string
	// RBAC caches settle within a second or two after the binding
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Second) {
		if code, body = get(scraper); code == http.StatusOK || time.Now().After(deadline) {
			break
		}
	}
	if code != http.StatusOK || !strings.Contains(body, "multiarchbuild_runs_started_total") {
		t.Fatalf("scraper bound to multiarch-build-metrics-reader: %d %.300s", code, body)
	}
	if code, _ := get(""); code != http.StatusUnauthorized {
		t.Errorf("no token: %d, want 401", code)
	}
	if code, _ := get(stranger); code != http.StatusForbidden {
		t.Errorf("token without the metrics-reader role: %d, want 403", code)
	}
	t.Logf("metrics at %s: 200 for the metrics reader, 401 without a token, 403 for another ServiceAccount", url)
}

// auditEvent is what the check reads of the API server's audit log.
type auditEvent struct {
	Stage     string                    `json:"stage"`
	Verb      string                    `json:"verb"`
	User      struct{ Username string } `json:"user"`
	ObjectRef *struct {
		Resource, Subresource, APIGroup, Name, Namespace string
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"responseStatus"`
	StageTimestamp time.Time `json:"stageTimestamp"`
}

// checkOperatorAudit reads the audit log the local cluster's API server
// writes for the operator's ServiceAccount (hack/cluster/up.sh) from since
// on: no request of the in-cluster operator was refused (403), and every
// grant that only the in-cluster operator uses was used. Returns an error
// that fails the run.
func checkOperatorAudit(path string, since time.Time) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	defer f.Close()
	user := "system:serviceaccount:" + operatorNS + ":" + operatorDeploy
	used := map[string]int{}
	var refused []string
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var ev auditEvent
		if json.Unmarshal(sc.Bytes(), &ev) != nil || ev.User.Username != user || ev.StageTimestamp.Before(since) || ev.ObjectRef == nil {
			continue
		}
		n++
		g := ev.ObjectRef.APIGroup
		if g == "" {
			g = "core"
		}
		res := ev.ObjectRef.Resource
		if ev.ObjectRef.Subresource != "" {
			res += "/" + ev.ObjectRef.Subresource
		}
		key := ev.Verb + " " + g + "/" + res
		used[key]++
		// A namespace being deleted refuses new objects with 403; the operator
		// stops at that answer (NamespaceTerminatingCause), nothing to grant.
		if ev.ResponseStatus != nil && ev.ResponseStatus.Code == http.StatusForbidden &&
			!strings.Contains(ev.ResponseStatus.Message, "because it is being terminated") {
			refused = append(refused, fmt.Sprintf("%s %s/%s: %s", key, ev.ObjectRef.Namespace, ev.ObjectRef.Name, ev.ResponseStatus.Message))
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	var missing, seen []string
	for grant, g := range testenv.GrantsUsedInClusterOnly {
		switch {
		case used[grant] > 0:
			seen = append(seen, grant)
		case g.E2E:
			missing = append(missing, grant+" ("+g.Why+")")
		}
	}
	sort.Strings(missing)
	sort.Strings(seen)
	sort.Strings(refused)
	fmt.Fprintf(os.Stderr, "SUMMARY: in-cluster operator audit: %d requests as %s, %d kinds; refused %d; in-cluster-only grants used %v\n",
		n, user, len(used), len(refused), seen)
	var problems []string
	if n == 0 {
		problems = append(problems, "no request of the operator's ServiceAccount in "+path)
	}
	if len(refused) > 0 {
		problems = append(problems, fmt.Sprintf("the API server refused the in-cluster operator (a rule the CSV lacks, or admission): %v", refused))
	}
	if len(missing) > 0 {
		problems = append(problems, fmt.Sprintf("grants said to be used only in cluster were not used: %v", missing))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return nil
}
