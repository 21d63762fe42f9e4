// Package templates holds the built-in injection templates and the template
// language they are written in.
//
// A template is Go text/template source that renders to YAML of a partial
// Pod; the engine merges it into the workload's Pod with a strategic merge
// patch. The function map mirrors the names Istio's injector exposes
// (annotation, isset, valueOrDefault, excludeInboundPort, ...) on top of
// sprig's text functions, so custom templates written for Istio render here
// unchanged.
package templates
