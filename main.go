// Command manager runs the multiarch-build-operator: it reconciles
// MultiArchBuilds into native per-architecture Tekton builds.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"os"

	configv1 "github.com/openshift/api/config/v1"
	machinev1beta1 "github.com/openshift/api/machine/v1beta1"
	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	buildv1alpha1 "github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/multiarch-build/multiarch-build-operator/controllers"
	"github.com/multiarch-build/multiarch-build-operator/controllers/capacity"
	"github.com/multiarch-build/multiarch-build-operator/internal/settings"
)

var scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(buildv1alpha1.AddToScheme(scheme))
	utilruntime.Must(tektonv1.AddToScheme(scheme))
	utilruntime.Must(machinev1beta1.AddToScheme(scheme))
	utilruntime.Must(configv1.AddToScheme(scheme))
}

func main() {
	var (
		metricsAddr          string
		probeAddr            string
		enableLeaderElection bool
		secureMetrics        bool
		enableHTTP2          bool
	)
	cfg := settings.Default()
	cfg.ApplyEnvironment(os.LookupEnv) // RELATED_IMAGE_* (OLM's relatedImages); flags win
	fs := flag.CommandLine
	fs.StringVar(&metricsAddr, "metrics-bind-address", "0",
		"Address the metrics endpoint binds to, e.g. :8443 (HTTPS) or :8080 (HTTP); 0 disables it.")
	fs.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address the /healthz and /readyz probes bind to.")
	fs.BoolVar(&enableLeaderElection, "leader-elect", false,
		"Enable leader election so that only one manager replica is active.")
	fs.BoolVar(&secureMetrics, "metrics-secure", true,
		"Serve metrics over HTTPS with authentication and authorization (TokenReview/SubjectAccessReview).")
	fs.BoolVar(&enableHTTP2, "enable-http2", false,
		"Enable HTTP/2 for the metrics server (off by default: HTTP/2 Rapid Reset, CVE-2023-44487).")
	cfg.BindFlags(fs)
	opts := zap.Options{Development: false}
	opts.BindFlags(fs)
	flag.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: %s [flags]\n\nThe multiarch-build-operator reconciles MultiArchBuilds (build.multiarch.io/v1alpha1)\ninto native per-architecture Tekton builds joined into one manifest list.\n\nFlags:\n", os.Args[0])
		fs.PrintDefaults()
	}
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	log := ctrl.Log.WithName("setup")

	if err := cfg.Validate(); err != nil {
		log.Error(err, "invalid settings")
		os.Exit(2)
	}

	var tlsOpts []func(*tls.Config)
	if !enableHTTP2 {
		tlsOpts = append(tlsOpts, func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
	}
	metricsOpts := metricsserver.Options{
		BindAddress:   metricsAddr,
		SecureServing: secureMetrics,
		TLSOpts:       tlsOpts,
	}
	if secureMetrics {
		metricsOpts.FilterProvider = filters.WithAuthenticationAndAuthorization
	}

	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                 scheme,
		Cache:                  controllers.CacheOptions(),
		Metrics:                metricsOpts,
		HealthProbeBindAddress: probeAddr,
		LeaderElection:         enableLeaderElection,
		LeaderElectionID:       "multiarch-build-operator.build.multiarch.io",
		// The manager exits right after it stops leading, so handing the
		// lease back is safe, and a replaced pod (rollout, eviction) is
		// followed at once instead of after the lease's 15 s.
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		log.Error(err, "unable to create manager")
		os.Exit(1)
	}

	if err := setupControllers(mgr, cfg); err != nil {
		log.Error(err, "unable to set up controllers")
		os.Exit(1)
	}

	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		log.Error(err, "unable to set up health check")
		os.Exit(1)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		log.Error(err, "unable to set up ready check")
		os.Exit(1)
	}

	log.Info("starting manager")
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "problem running manager")
		os.Exit(1)
	}
}

// setupControllers registers every reconciler with the manager.
func setupControllers(mgr ctrl.Manager, cfg settings.Settings) error {
	checker, err := capacity.NewCluster(mgr, cfg)
	if err != nil {
		return fmt.Errorf("capacity checker: %w", err)
	}
	if err := capacity.Setup(mgr, checker); err != nil {
		return fmt.Errorf("capacity controller: %w", err)
	}
	builds := &controllers.MultiArchBuildReconciler{
		Settings:        cfg,
		Capacity:        checker,
		CapacityWatches: checker.BuildWatches(),
	}
	if err := builds.SetupWithManager(context.Background(), mgr); err != nil {
		return fmt.Errorf("MultiArchBuild controller: %w", err)
	}
	return nil
}
