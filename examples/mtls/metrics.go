// This file is the same in the examples that serve metrics: the -metrics
// flag, which counts the security events for Prometheus. Copy it with
// main.go.

package main

import (
	"flag"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mcpauth/mcpauth"
	mcpprom "github.com/mcpauth/mcpauth/metrics/prometheus"
)

// registerMetrics registers -metrics on fs.
func registerMetrics(fs *flag.FlagSet) *bool {
	return fs.Bool("metrics", false, "serve Prometheus metrics of the security events (authentications, lockouts, rate limits, latency) at /metrics, without authentication: expose it only to your monitoring")
}

// observe returns the options for mcpauth.Require and a wrapper for the
// server's handler. Without -metrics they change nothing: events go to the
// default log sink. With it, every event is also counted and then handed
// to next (nil: mcpauth.LogEvents on slog.Default), and the wrapper serves
// the counts at /metrics.
func observe(metrics bool, next mcpauth.EventSink) (*mcpauth.RequireOptions, func(http.Handler) http.Handler, error) {
	if !metrics {
		return nil, func(h http.Handler) http.Handler { return h }, nil
	}
	if next == nil {
		next = mcpauth.LogEvents(nil)
	}
	reg := prometheus.NewRegistry()
	sink, err := mcpprom.New(&mcpprom.Options{Registerer: reg, Next: next})
	if err != nil {
		return nil, nil, err
	}
	wrap := func(h http.Handler) http.Handler {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.Handle("/", h)
		return mux
	}
	return &mcpauth.RequireOptions{Events: sink}, wrap, nil
}
