// Package inject is the injection engine: a Pod, its namespace and a loaded
// config in; the mutated Pod, a skip with its reason, or an error naming the
// annotation or field at fault out. It knows nothing of HTTP or files: the
// admission webhook and the offline CLI both call it.
//
// Injection runs in fixed steps: decide (decide.go), resolve and validate the
// per-pod settings from annotations and config, render each selected
// template to a partial Pod, merge the partials into the Pod with a
// strategic merge patch, then post-process (user overrides and image: auto,
// Prometheus merge, app probe rewrite, status annotation, container order).
// A pod that already carries an injection is first uninjected, which makes
// injection idempotent; Uninject reverses an injection exactly.
package inject
