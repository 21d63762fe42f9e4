// Package config loads and validates meshinject's three configuration
// inputs, the same ones Istio's injector reads so existing config can be
// reused:
//
//   - the injection config (the "config" key of the istio-sidecar-injector
//     ConfigMap): policy, templates, aliases, selectors;
//   - the values (the "values" key, Helm-values shaped);
//   - the mesh config (the "mesh" key of the istio ConfigMap).
//
// Each has embedded defaults equal to Istio's chart defaults, so Load with
// zero Sources works. A loaded Config is immutable and safe to share.
package config
