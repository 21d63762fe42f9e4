package templates

import (
	"embed"
	"io/fs"
	"maps"
	"slices"
	"strings"
)

//go:embed *.yaml
var files embed.FS

//go:embed _helpers.tpl
var helpers string

// Builtin returns the built-in templates keyed by name (the file name without
// its .yaml extension): gateway, grpc-agent, grpc-simple and sidecar.
func Builtin() map[string]string {
	out := map[string]string{}
	entries, err := fs.ReadDir(files, ".")
	if err != nil {
		// The embedded FS is fixed at build time; a failure here is a build defect.
		panic("templates: read embedded files: " + err.Error())
	}
	for _, e := range entries {
		b, err := files.ReadFile(e.Name())
		if err != nil {
			panic("templates: read embedded file: " + err.Error())
		}
		out[strings.TrimSuffix(e.Name(), ".yaml")] = string(b)
	}
	return out
}

// Names returns the sorted names of the templates in m.
func Names[T any](m map[string]T) []string {
	return slices.Sorted(maps.Keys(m))
}
