// Command chartrender renders Istio's istio-discovery Helm chart with Helm's
// own engine and writes the sidecar injector's inputs into one directory:
//
//	config  the istio-sidecar-injector ConfigMap's "config" key
//	values  its "values" key (JSON, as the chart writes it)
//	mesh    the istio ConfigMap's "mesh" key
//	istio-sidecar-injector.yaml  that ConfigMap as a whole
//
// which is the layout of meshinject's --config-dir, and what istioctl
// kube-inject takes as --injectConfigFile, --valuesFile and --meshConfigFile.
//
//	chartrender -chart DIR -out DIR [-set key=value,...]
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"helm.sh/helm/v4/pkg/chart/common"
	commonutil "helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	"helm.sh/helm/v4/pkg/strvals"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

func main() {
	chartDir := flag.String("chart", "", "the istio-discovery chart directory")
	out := flag.String("out", "", "directory to write config, values and mesh into")
	set := flag.String("set", "", "chart values, as helm --set takes them")
	namespace := flag.String("namespace", "istio-system", "release namespace")
	flag.Parse()
	if err := run(*chartDir, *out, *set, *namespace); err != nil {
		fmt.Fprintln(os.Stderr, "chartrender:", err)
		os.Exit(1)
	}
}

func run(chartDir, out, set, namespace string) error {
	if chartDir == "" || out == "" {
		return errors.New("-chart and -out are required")
	}
	chrt, err := loader.Load(chartDir)
	if err != nil {
		return fmt.Errorf("load chart %s: %w", chartDir, err)
	}
	vals := map[string]any{}
	if set != "" {
		if err := strvals.ParseInto(set, vals); err != nil {
			return fmt.Errorf("-set %q: %w", set, err)
		}
	}
	rv, err := commonutil.ToRenderValues(chrt, vals, common.ReleaseOptions{Name: "istiod", Namespace: namespace, IsInstall: true}, common.DefaultCapabilities)
	if err != nil {
		return fmt.Errorf("values: %w", err)
	}
	files, err := engine.Render(chrt, rv)
	if err != nil {
		return fmt.Errorf("render: %w", err)
	}
	maps, err := configMaps(files)
	if err != nil {
		return err
	}
	inj, ok := maps["istio-sidecar-injector"]
	if !ok {
		return errors.New("the chart rendered no istio-sidecar-injector ConfigMap")
	}
	mesh, ok := maps["istio"]
	if !ok {
		return errors.New("the chart rendered no istio ConfigMap")
	}
	whole, err := yaml.Marshal(inj)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	for name, data := range map[string]string{
		"config":                      inj.Data["config"],
		"values":                      inj.Data["values"],
		"mesh":                        mesh.Data["mesh"],
		"istio-sidecar-injector.yaml": string(whole),
	} {
		if err := os.WriteFile(filepath.Join(out, name), []byte(data), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// configMaps returns the ConfigMaps among the rendered files, by name.
func configMaps(files map[string]string) (map[string]*corev1.ConfigMap, error) {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	out := map[string]*corev1.ConfigMap{}
	for _, n := range names {
		if !strings.HasSuffix(n, ".yaml") {
			continue
		}
		for _, doc := range bytes.Split([]byte(files[n]), []byte("\n---")) {
			var cm corev1.ConfigMap
			if err := yaml.Unmarshal(doc, &cm); err != nil || cm.Kind != "ConfigMap" {
				continue
			}
			out[cm.Name] = &cm
		}
	}
	return out, nil
}
