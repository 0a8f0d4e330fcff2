package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	configv1 "github.com/openshift/api/config/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/multiarch-build/multiarch-build-operator/internal/clusterconfig"
	"github.com/multiarch-build/multiarch-build-operator/internal/pipeline"
)

// The cluster's network and trust configuration (internal/clusterconfig):
// OpenShift's config singletons and mirror sets are cached (only those
// kinds that are served; Proxy and Image by the name "cluster"), and a
// change re-queues the builds it kept from starting. ConfigMaps are read
// uncached, by name, when a run is created: the proxy's trustedCA in
// openshift-config, the flags' ConfigMaps, and the build namespace's
// injected trust bundle, which the operator creates empty for OpenShift's
// network operator to fill. The configuration is rendered into the run at
// creation (values and an immutable ConfigMap named after its content):
// a change reaches the next run, never a running one.
//
// +kubebuilder:rbac:groups=config.openshift.io,resources=proxies;images,verbs=list;watch,resourceNames=cluster
// +kubebuilder:rbac:groups=config.openshift.io,resources=imagedigestmirrorsets;imagetagmirrorsets,verbs=list;watch
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=create
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get,resourceNames=multiarch-build-trusted-ca-bundle;user-ca-bundle;multiarch-build-trusted-ca;multiarch-build-registries

// ReasonClusterConfigInvalid: the cluster's proxy, trust or registries
// configuration cannot be used; the message names the object and field.
// No run starts until it is fixed.
const ReasonClusterConfigInvalid = "ClusterConfigInvalid"

var (
	proxyGK = schema.GroupKind{Group: configv1.GroupName, Kind: "Proxy"}
	imageGK = schema.GroupKind{Group: configv1.GroupName, Kind: "Image"}
	idmsGK  = schema.GroupKind{Group: configv1.GroupName, Kind: "ImageDigestMirrorSet"}
	itmsGK  = schema.GroupKind{Group: configv1.GroupName, Kind: "ImageTagMirrorSet"}
)

// clusterConfigSource reads the cluster's configuration for new runs.
type clusterConfigSource struct {
	reader                   client.Reader // the config cache; nil when no kind is served
	apiReader                client.Reader
	client                   client.Client
	flags                    clusterconfig.Flags
	proxy, image, idms, itms bool

	mu      sync.Mutex
	blocked map[types.NamespacedName]bool // builds waiting for a fix
}

// setupClusterConfig detects the served kinds, adds their cache to the
// manager and re-queues blocked builds on every change.
func (r *MultiArchBuildReconciler) setupClusterConfig(mgr manager.Manager, c controller.Controller) error {
	s := r.Settings
	src := &clusterConfigSource{
		apiReader: r.APIReader,
		client:    r.Client,
		flags: clusterconfig.Flags{HTTPProxy: s.HTTPProxy, HTTPSProxy: s.HTTPSProxy, NoProxy: s.NoProxy,
			TrustedCA: s.TrustedCAConfigMap, Registries: s.RegistriesConfigMap},
		blocked: map[types.NamespacedName]bool{},
	}
	r.clusterCfg = src
	byObject := map[client.Object]cache.ByObject{}
	var kinds []client.Object
	for _, k := range []struct {
		gk     schema.GroupKind
		obj    client.Object
		named  bool
		served *bool
	}{
		{proxyGK, &configv1.Proxy{}, true, &src.proxy},
		{imageGK, &configv1.Image{}, true, &src.image},
		{idmsGK, &configv1.ImageDigestMirrorSet{}, false, &src.idms},
		{itmsGK, &configv1.ImageTagMirrorSet{}, false, &src.itms},
	} {
		ok, err := kindServedBy(mgr, k.gk)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		*k.served = true
		kinds = append(kinds, k.obj)
		if k.named {
			byObject[k.obj] = cache.ByObject{Field: fields.OneTermEqualSelector("metadata.name", clusterconfig.ClusterName)}
		} else {
			byObject[k.obj] = cache.ByObject{}
		}
	}
	if len(kinds) == 0 {
		log.Log.WithName("clusterconfig").Info("OpenShift's Proxy, Image and mirror set kinds are not served: only the operator's flags give build pods a proxy, a CA bundle or registries configuration")
		return nil
	}
	cc, err := cache.New(mgr.GetConfig(), cache.Options{
		Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper(), ByObject: byObject,
		DefaultTransform: cache.TransformStripManagedFields(),
	})
	if err != nil {
		return fmt.Errorf("cluster configuration cache: %w", err)
	}
	if err := mgr.Add(configCache{cc}); err != nil {
		return err
	}
	src.reader = cc
	for _, obj := range kinds {
		if err := c.Watch(source.Kind(cc, obj, handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
			return src.waiting()
		}))); err != nil {
			return fmt.Errorf("watch %T: %w", obj, err)
		}
	}
	return nil
}

type configCache struct{ cache.Cache }

func (c configCache) GetCache() cache.Cache { return c.Cache }

func kindServedBy(mgr manager.Manager, gk schema.GroupKind) (bool, error) {
	_, err := mgr.GetRESTMapper().RESTMapping(gk, configv1.GroupVersion.Version)
	switch {
	case err == nil:
		return true, nil
	case meta.IsNoMatchError(err):
		return false, nil
	default:
		return false, fmt.Errorf("discover %s: %w", gk, err)
	}
}

func (c *clusterConfigSource) waiting() []reconcile.Request {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]reconcile.Request, 0, len(c.blocked))
	for k := range c.blocked {
		out = append(out, reconcile.Request{NamespacedName: k})
	}
	return out
}

func (c *clusterConfigSource) setBlocked(b *v1alpha1.MultiArchBuild, blocked bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := types.NamespacedName{Namespace: b.Namespace, Name: b.Name}
	if blocked {
		c.blocked[k] = true
	} else {
		delete(c.blocked, k)
	}
}

// clusterConfigFor reads and renders the configuration for a new run of
// s.build. ok is false when the run must not start (the outcome says why).
func (r *MultiArchBuildReconciler) clusterConfigFor(ctx context.Context, s *buildScope) (*pipeline.ClusterConfig, clusterconfig.Config, bool, error) {
	src := r.clusterCfg
	if src == nil {
		return nil, clusterconfig.Config{}, true, nil
	}
	in, err := src.read(ctx, s.build.Namespace)
	if err == nil {
		var cfg clusterconfig.Config
		if cfg, err = clusterconfig.Render(in); err == nil {
			src.setBlocked(s.build, false)
			if cfg.Empty() {
				return nil, cfg, true, nil
			}
			pc := &pipeline.ClusterConfig{HTTPProxy: cfg.HTTPProxy, HTTPSProxy: cfg.HTTPSProxy, NoProxy: cfg.NoProxy,
				CABundle: cfg.CABundle != "", RegistriesConf: cfg.RegistriesConf != "", Policy: cfg.Policy != ""}
			if len(cfg.Data()) > 0 {
				pc.ConfigMap = clusterConfigMapName(s.runName, cfg)
			}
			return pc, cfg, true, nil
		}
	}
	var ce *clusterconfig.Error
	var forbidden error
	switch {
	case errors.As(err, &ce):
	case apierrors.IsForbidden(err):
		forbidden = err
	default:
		return nil, clusterconfig.Config{}, false, err
	}
	src.setBlocked(s.build, true)
	msg := "cluster configuration: " + err.Error() + "; no run starts until it is fixed"
	if forbidden != nil {
		msg = "cluster configuration: " + err.Error() + " (the operator's role grants get on ConfigMaps named user-ca-bundle, multiarch-build-trusted-ca and multiarch-build-registries only)"
	}
	s.outcome.CreateErr, s.outcome.CreateReason = errors.New(msg), ReasonClusterConfigInvalid
	// A ConfigMap is not watched: look again, with a growing delay.
	s.requeue(backoff(r.clock(), s.build.Status.Conditions, v1alpha1.ConditionSucceeded))
	return nil, clusterconfig.Config{}, false, nil
}

func clusterConfigMapName(runName string, cfg clusterconfig.Config) string {
	return runName + "-config-" + cfg.Hash()
}

// read gathers the sources for a run in namespace ns.
func (c *clusterConfigSource) read(ctx context.Context, ns string) (clusterconfig.Sources, error) {
	in := clusterconfig.Sources{Flags: c.flags}
	if c.proxy {
		p := &configv1.Proxy{}
		switch err := c.reader.Get(ctx, types.NamespacedName{Name: clusterconfig.ClusterName}, p); {
		case apierrors.IsNotFound(err):
		case err != nil:
			return in, fmt.Errorf("get proxies.config.openshift.io/cluster: %w", err)
		default:
			in.Proxy = p
			if n := p.Spec.TrustedCA.Name; n != "" {
				cm, err := c.configMap(ctx, clusterconfig.OpenShiftConfigNamespace, n)
				if err != nil {
					return in, err
				}
				in.ProxyCA = cm
			}
		}
		// OpenShift: the build namespace's injected bundle.
		cm, err := c.injected(ctx, ns)
		if err != nil {
			return in, err
		}
		in.Injected = cm
	}
	if c.image {
		img := &configv1.Image{}
		switch err := c.reader.Get(ctx, types.NamespacedName{Name: clusterconfig.ClusterName}, img); {
		case apierrors.IsNotFound(err):
		case err != nil:
			return in, fmt.Errorf("get images.config.openshift.io/cluster: %w", err)
		default:
			in.Image = img
		}
	}
	if c.idms {
		var l configv1.ImageDigestMirrorSetList
		if err := c.reader.List(ctx, &l); err != nil {
			return in, fmt.Errorf("list ImageDigestMirrorSets: %w", err)
		}
		in.IDMS = l.Items
	}
	if c.itms {
		var l configv1.ImageTagMirrorSetList
		if err := c.reader.List(ctx, &l); err != nil {
			return in, fmt.Errorf("list ImageTagMirrorSets: %w", err)
		}
		in.ITMS = l.Items
	}
	for _, f := range []struct {
		ref string
		dst **corev1.ConfigMap
	}{{c.flags.TrustedCA, &in.FlagCA}, {c.flags.Registries, &in.FlagRegistries}} {
		if f.ref == "" {
			continue
		}
		ns, name, _ := strings.Cut(f.ref, "/")
		cm, err := c.configMap(ctx, ns, name)
		if err != nil {
			return in, err
		}
		*f.dst = cm
	}
	return in, nil
}

// configMap is nil when it does not exist.
func (c *clusterConfigSource) configMap(ctx context.Context, ns, name string) (*corev1.ConfigMap, error) {
	cm := &corev1.ConfigMap{}
	switch err := c.apiReader.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, cm); {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("get ConfigMap %s/%s: %w", ns, name, err)
	}
	return cm, nil
}

// injected returns the namespace's injected trust bundle, creating it
// (empty, for OpenShift's network operator to fill) when absent. A bundle
// not filled yet is no error: the proxy's trustedCA is read directly too.
func (c *clusterConfigSource) injected(ctx context.Context, ns string) (*corev1.ConfigMap, error) {
	cm, err := c.configMap(ctx, ns, clusterconfig.InjectedConfigMap)
	if err != nil || cm != nil {
		return cm, err
	}
	cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
		Namespace: ns, Name: clusterconfig.InjectedConfigMap,
		Labels: map[string]string{clusterconfig.InjectLabel: "true", pipeline.LabelManagedBy: pipeline.ManagedBy},
	}}
	if err := c.client.Create(ctx, cm); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create ConfigMap %s/%s (the trusted CA bundle OpenShift injects): %w", ns, cm.Name, err)
	}
	return nil, nil
}

// ensureClusterConfigMap writes the rendered configuration of a run about
// to be created: immutable, named after its content, owned by the build.
func (r *MultiArchBuildReconciler) ensureClusterConfigMap(ctx context.Context, s *buildScope, pc *pipeline.ClusterConfig, cfg clusterconfig.Config) error {
	if pc == nil || pc.ConfigMap == "" {
		return nil
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: s.build.Namespace, Name: pc.ConfigMap,
			Labels:      map[string]string{pipeline.LabelManagedBy: pipeline.ManagedBy, pipeline.LabelBuild: labelValue(s.build.Name)},
			Annotations: map[string]string{"build.multiarch.io/cluster-config-from": strings.Join(cfg.From, "; ")},
		},
		Immutable: ptrTrue(),
		Data:      cfg.Data(),
	}
	if err := controllerutil.SetOwnerReference(s.build, cm, r.Scheme); err != nil {
		return err
	}
	if err := r.Client.Create(ctx, cm); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create ConfigMap %s (cluster configuration of run %s): %w", klog.KObj(cm), s.runName, err)
	}
	return nil
}

func ptrTrue() *bool { b := true; return &b }

// labelValue: build names are DNS subdomains (up to 253), labels 63.
func labelValue(name string) string {
	if len(name) > 63 {
		name = strings.TrimRight(name[:63], "-.")
	}
	return name
}
