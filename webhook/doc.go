// Package webhook is the admission front door to the injection engine: an
// admission.Handler that decodes the pod of an AdmissionReview, calls the
// engine, and answers with a JSON patch, a skip with a warning, or a denial
// that names the annotation or field at fault. Serving (TLS, HTTP) is
// controller-runtime's webhook.Server; this package only handles reviews.
package webhook
