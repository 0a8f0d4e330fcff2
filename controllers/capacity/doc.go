// Package capacity is the operator's capacity subsystem on the cluster
// side: the Checker the build reconciler asks before it starts a run
// (checker.go: reads nodes, MachineSets, Machines, Infrastructure,
// ClusterVersion and the boot images, never writes), and the Reconciler
// that is the only writer of MachineSets (controller.go). The decisions
// themselves (which architecture a MachineSet serves, what to clone, when
// to scale, what a build still needs) are pure functions of package
// internal/capacity, tested without an API server; this package fetches
// the objects, calls them and writes the results.
//
// The build flow lives in package controllers; a newcomer finds the
// capacity flow here in one place.
package capacity
