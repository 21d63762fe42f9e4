//go:build node && !e2e

package e2e

import (
	"os"
	"testing"
)

// TestMain of the node tier (make test-node): see runNode.
func TestMain(m *testing.M) { os.Exit(runNode(m)) }
