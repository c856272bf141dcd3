// Package soak runs the built collector for a long time through everything at once, at
// random, against real parts, and checks after every change that each collector's
// endpoint serves exactly the series it must.
//
// The parts are those of internal/testenv: a real kube-apiserver (reached by the
// collectors through a proxy that can cut them off), two kubelet-style nodes whose VMIs
// each get a launcher pod with its own libvirtd and a real QEMU guest, and libvirt's
// test driver for a third node with many VMIs. Each node has its own otelcol-kubevirt
// process, started from bin/otelcol-kubevirt with the shipped configuration. The soak
// plays KubeVirt: it creates, schedules, runs, pauses, resumes, migrates, stops and
// deletes VMIs, and it injects faults: a launcher's libvirtd killed and restarted, a
// launcher socket removed and put back, the API server restarted, a watch expired.
//
// What the soak did is kept in a model ([World]); the oracle ([World.Expected]) says
// from it, following the contract of the README ("When series appear and disappear",
// "How it works"), which series each endpoint must serve. After every burst of changes
// comes a quiet point: the soak changes nothing until every endpoint equals the oracle
// and has kept equal for a settle time (see [Options.Settle]); one that does not within
// the burst's recovery bound, or drifts away while the soak is quiet, is a mismatch.
//
// Every choice comes from one seeded math/rand/v2 generator and depends only on the
// model, never on timing, so a seed replays the same sequence of changes.
//
// The soak also follows each collector's goroutines (the Go runtime's scheduler trace),
// open file descriptors, threads and RSS (/proc), and compares them between two moments
// when the collectors have nothing to report: after a warm-up and after the final drain.
//
// It does not test the collector's configuration, its OTLP path or Prometheus: other
// tests do (internal/e2e).
package soak
