// Package deploy holds the kustomize base and overlays `kubectl apply -k`
// installs, and embeds the webhook configurations the explain command
// reads offline: what `meshinject explain` says would match is what
// deploy/ installs.
package deploy

import _ "embed"

// DefaultWebhooks is the default revision's MutatingWebhookConfiguration
// (deploy/base/webhook.yaml).
//
//go:embed base/webhook.yaml
var DefaultWebhooks []byte

// RevisionWebhooks is a revision's MutatingWebhookConfiguration, for the
// revision "canary" (deploy/overlays/canary/webhook.yaml).
//
//go:embed overlays/canary/webhook.yaml
var RevisionWebhooks []byte
