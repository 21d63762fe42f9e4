// Package version holds build information, set at link time with
// -ldflags "-X github.com/meshinject/meshinject/internal/version.Version=...".
package version

// Version and Commit identify the build; "dev" and "unknown" when not set.
var (
	Version = "dev"
	Commit  = "unknown"
)
