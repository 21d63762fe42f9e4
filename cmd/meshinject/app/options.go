package app

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/pflag"

	"github.com/meshinject/meshinject/internal/config"
	"github.com/meshinject/meshinject/internal/inject"
)

// configOptions are the configuration flags, named as istioctl kube-inject
// names them so its command lines work unchanged.
type configOptions struct {
	// InjectConfigFile is an injection config file (or a bare template, taken
	// as "sidecar"). Default: the embedded config.
	InjectConfigFile string
	// ValuesFile is a values file merged over the embedded values.
	ValuesFile string
	// MeshConfigFile is a mesh config file merged over the embedded mesh config.
	MeshConfigFile string
	// Set are key=value values overrides, applied after ValuesFile.
	Set []string
	// Revision is the control-plane revision. Default: the default revision.
	Revision string
	// StrictValues refuses values keys injection does not read. Default:
	// they load, with a warning on standard error.
	StrictValues bool
}

// AddFlags registers the options on fs.
func (o *configOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.InjectConfigFile, "injectConfigFile", "", "injection config file (the istio-sidecar-injector ConfigMap's config key, or a bare template taken as 'sidecar'); default: built-in")
	fs.StringVar(&o.ValuesFile, "valuesFile", "", "values file merged over the built-in values (the istio-sidecar-injector ConfigMap's values key)")
	fs.StringVar(&o.MeshConfigFile, "meshConfigFile", "", "mesh config file merged over the built-in mesh config (the istio ConfigMap's mesh key)")
	fs.StringArrayVar(&o.Set, "set", nil, "override a value, e.g. --set global.hub=registry.example (repeatable; the value is taken verbatim, commas included)")
	fs.StringVarP(&o.Revision, "revision", "r", "", "control-plane revision (default: the default revision)")
	fs.BoolVar(&o.StrictValues, "strict-values", false, "refuse a values key injection does not read, naming it (default: warn and ignore it)")
}

// Load reads the files and loads the configuration.
func (o *configOptions) Load() (*config.Config, error) {
	var src config.Sources
	read := func(path, flag string, dst *[]byte) error {
		if path == "" {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("--%s: %w", flag, err)
		}
		*dst = b
		return nil
	}
	if err := read(o.InjectConfigFile, "injectConfigFile", &src.InjectionConfig); err != nil {
		return nil, err
	}
	if err := read(o.ValuesFile, "valuesFile", &src.Values); err != nil {
		return nil, err
	}
	if err := read(o.MeshConfigFile, "meshConfigFile", &src.Mesh); err != nil {
		return nil, err
	}
	src.Set, src.Revision, src.StrictValues = o.Set, o.Revision, o.StrictValues
	return config.Load(src)
}

// Engine loads the configuration and builds the engine on it, with the
// native-sidecar default of a --native-sidecars value. The configuration's
// warnings go to warn, a line each.
func (o *configOptions) Engine(nativeSidecars string, warn io.Writer) (*inject.Engine, bool, error) {
	native, err := parseNative(nativeSidecars)
	if err != nil {
		return nil, false, err
	}
	cfg, err := o.Load()
	if err != nil {
		return nil, false, err
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(warn, "meshinject: warning: %s\n", w)
	}
	eng, err := inject.New(inject.Options{Config: cfg})
	return eng, native, err
}
