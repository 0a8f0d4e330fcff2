//go:build ignore

// pause is the pod sandbox process of the local cluster's nodes: it waits for
// SIGINT or SIGTERM and exits. Built statically by hack/images/build-images.sh.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGINT, syscall.SIGTERM)
	<-c
}
