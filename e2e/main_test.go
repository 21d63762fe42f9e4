//go:build e2e || node

package e2e

import (
	"os"
	"testing"
)

// TestMain runs the tier the build tags select: the node tier (tag node,
// make test-node) or the e2e suite (tag e2e, make test-e2e). Linting
// builds both tags at once; the node tier wins then.
func TestMain(m *testing.M) {
	if nodeTierBuild {
		os.Exit(runNode(m))
	}
	os.Exit(runE2E(m))
}
