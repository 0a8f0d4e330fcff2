package controllers

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Build metrics, served with controller-runtime's on the manager's metrics
// endpoint.
var (
	buildsStarted = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "multiarchbuild_runs_started_total",
		Help: "PipelineRuns the operator created.",
	})
	buildsFinished = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "multiarchbuild_runs_finished_total",
		Help: "Runs that finished, by result (the Succeeded condition's reason: Succeeded, Failed, PipelineRunTimeout, Cancelled, PipelineRunDeleted).",
	}, []string{"result"})
	buildDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "multiarchbuild_run_duration_seconds",
		Help:    "Duration of finished PipelineRuns, from Tekton's start to completion time.",
		Buckets: []float64{30, 60, 120, 300, 600, 900, 1800, 3600, 7200},
	}, []string{"result"})
	capacityWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "multiarchbuild_capacity_wait_seconds",
		Help:    "Time builds waited for a node of an architecture (CapacityReady False to True).",
		Buckets: []float64{1, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600},
	}, []string{"arch"})
	platformPhase = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "multiarchbuild_platform_phase_seconds",
		Help:    "Phases of each platform's build (status.platforms[].timings: waiting, installing, building, pushing), by architecture; observed once per run, when it finishes. Platforms a retry reused are not observed.",
		Buckets: []float64{1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600},
	}, []string{"arch", "phase"})
)

func init() {
	metrics.Registry.MustRegister(buildsStarted, buildsFinished, buildDuration, capacityWait, platformPhase)
}
