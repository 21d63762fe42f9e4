// Package webhook is the admission front door to the injection engine: an
// admission.Handler that decodes the pod of an AdmissionReview, calls the
// engine, and answers with a JSON patch, a skip with a warning, or a denial
// that names the annotation or field at fault; its HTTP handler
// (NewHTTPHandler) decodes the usual review in one pass, bounds the bodies
// in flight and refuses what is not a review; it also counts reviews
// (NewMetrics) and records Events (NewEvents). Listening and TLS are
// controller-runtime's webhook.Server, set up by meshinject serve.
package webhook
