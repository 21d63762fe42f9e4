//go:build e2e && !node

package e2e

import "testing"

// nodeTierBuild is false: the build has the e2e tag only.
var nodeTierBuild = false

// runNode is not built without the node tag.
func runNode(*testing.M) int { panic("the node tier needs the build tag node") }
