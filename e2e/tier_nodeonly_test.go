//go:build node && !e2e

package e2e

import "testing"

// runE2E is not built without the e2e tag.
func runE2E(*testing.M) int { panic("the e2e suite needs the build tag e2e") }
