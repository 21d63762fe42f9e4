//go:build node

package e2e

// nodeTierBuild is true: the build has the node tag.
var nodeTierBuild = true
