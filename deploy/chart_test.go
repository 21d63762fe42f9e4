package deploy_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"sigs.k8s.io/yaml"

	"github.com/meshinject/meshinject/cmd/meshinject/app/tags"
	"github.com/meshinject/meshinject/internal/config"
	"github.com/meshinject/meshinject/test/testutil"
)

var update = flag.Bool("update", false, "rewrite the chart's README and deploy/monitoring from the chart")

// TestChartMatchesKustomize keeps the two installs from drifting: the
// chart with its default values renders the objects of
// deploy/overlays/cert-manager, up to the labels naming the Helm release
// and the Namespace, which helm install --create-namespace makes.
func TestChartMatchesKustomize(t *testing.T) {
	chart := withoutHelmLabels(objects(t, helmTemplate(t)))
	kustomize := objects(t, run(t, "kustomize", "build", "overlays/cert-manager"))
	delete(kustomize, "Namespace /meshinject")
	if diff := cmp.Diff(keys(kustomize), keys(chart)); diff != "" {
		t.Fatalf("objects differ (-kustomize +chart):\n%s", diff)
	}
	for _, k := range keys(chart) {
		if diff := cmp.Diff(kustomize[k], chart[k]); diff != "" {
			t.Errorf("%s differs (-kustomize +chart):\n%s", k, diff)
		}
	}
}

// everything turns every optional part of the chart on.
var everything = []string{
	"revision=canary", "revisionTags={default,prod}", "tls.mode=self-managed", "autoscaling.enabled=true",
	"metrics.serviceMonitor.enabled=true", "metrics.podMonitor.enabled=true", "metrics.prometheusRule.enabled=true",
	"metrics.secure=true", "dashboards.enabled=true", "hostNetwork=true", "port=15017", "priorityClassName=system-cluster-critical",
	"sidecarInjectorWebhook.enableNamespacesByDefault=false", "global.imagePullSecrets={regcred}", "global.imagePullPolicy=IfNotPresent",
}

func TestChartLint(t *testing.T) {
	for name, set := range map[string][]string{
		"defaults":       nil,
		"everything":     everything,
		"secret":         {"tls.mode=secret", "tls.caBundle=Q0E=", "webhook.url=https://injector.example:9443/inject"},
		"all-namespaces": {"sidecarInjectorWebhook.enableNamespacesByDefault=true", "webhook.failurePolicy=Ignore"},
	} {
		t.Run(name, func(t *testing.T) {
			args := []string{"lint", "--strict", "charts/meshinject", "--namespace", "meshinject"}
			for _, s := range set {
				args = append(args, "--set", s)
			}
			out := run(t, "helm", args...)
			if !strings.Contains(string(out), "0 chart(s) failed") {
				t.Errorf("helm lint:\n%s", out)
			}
		})
	}
}

// TestChartRefusesBadValues checks that the schema (or the templates)
// refuse a bad value, naming it.
func TestChartRefusesBadValues(t *testing.T) {
	for set, want := range map[string]string{
		"tls.mode=vault":                                      "/tls/mode",
		"webhook.failurePolicy=Maybe":                         "/webhook/failurePolicy",
		"webhook.timeoutSeconds=31":                           "/webhook/timeoutSeconds",
		"port=0":                                              "/port",
		"revision=Canary":                                     "/revision",
		"revisionTags={default}":                              "cannot also be tagged",
		"tls.mode=secret":                                     "/tls/caBundle",
		"sidecarInjectorWebhook.bogus=1":                      "'bogus' not allowed",
		"webhook.url=http://plain":                            "/webhook/url",
		"metrics.prometheusRule.latencyRatio=2":               "/metrics/prometheusRule/latencyRatio",
		"sidecarInjectorWebhook.reinvocationPolicy=Sometimes": "/sidecarInjectorWebhook/reinvocationPolicy",
		"image.digest=latest":                                 "/image/digest",
		"image.pullPolicy=Sometimes":                          "/image/pullPolicy",
	} {
		_, err := helmTemplateErr(t, set)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("--set %s: error %v, want one naming %q", set, err, want)
		}
	}
}

// TestChartImage checks the injector's image reference: the tag by
// default, the digest instead when one is set, and the pull policy from
// image.pullPolicy before global.imagePullPolicy.
func TestChartImage(t *testing.T) {
	digest := "sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct {
		set               []string
		image, pullPolicy string
	}{
		{nil, "ghcr.io/meshinject/meshinject:0.1.0", ""},
		{[]string{"image.tag=0.2.0", "global.imagePullPolicy=Always"}, "ghcr.io/meshinject/meshinject:0.2.0", "Always"},
		{[]string{"image.digest=" + digest, "image.tag=0.2.0", "image.pullPolicy=Never", "global.imagePullPolicy=Always"}, "ghcr.io/meshinject/meshinject@" + digest, "Never"},
	} {
		dep := objects(t, helmTemplate(t, tc.set...))["Deployment meshinject/meshinject"]
		if dep == nil {
			t.Fatal("no Deployment meshinject/meshinject")
		}
		c := dep["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
		pp, _ := c["imagePullPolicy"].(string)
		if c["image"] != tc.image || pp != tc.pullPolicy {
			t.Errorf("--set %v: image %v, pull policy %q; want %s, %q", tc.set, c["image"], pp, tc.image, tc.pullPolicy)
		}
	}
}

// TestChartRevisionTags checks the configurations of a revision with
// tags: the revision's own two entries, two per tag, and the default
// revision's entries on the tag "default" only; every configuration
// carries the labels self-managed TLS and meshinject tag list select on.
func TestChartRevisionTags(t *testing.T) {
	objs := objects(t, helmTemplate(t, "revision=canary", "revisionTags={default,prod}"))
	want := map[string][]string{
		"meshinject-sidecar-injector-canary": {"rev.namespace canary", "rev.object canary"},
		"meshinject-revision-tag-default":    {"rev.namespace default", "rev.object default", "namespace -", "object -"},
		"meshinject-revision-tag-prod":       {"rev.namespace prod", "rev.object prod"},
	}
	for name, entries := range want {
		mwc, ok := objs["MutatingWebhookConfiguration /"+name]
		if !ok {
			t.Errorf("no MutatingWebhookConfiguration %s", name)
			continue
		}
		labels := mwc["metadata"].(map[string]any)["labels"].(map[string]any)
		if labels["meshinject.io/rev"] != "canary" {
			t.Errorf("%s: label meshinject.io/rev=%v, want canary", name, labels["meshinject.io/rev"])
		}
		var got []string
		for _, w := range mwc["webhooks"].([]any) {
			got = append(got, entrySummary(w.(map[string]any)))
		}
		if diff := cmp.Diff(entries, got); diff != "" {
			t.Errorf("%s entries (-want +got):\n%s", name, diff)
		}
	}
}

// entrySummary is an entry's name without its suffix and the istio.io/rev
// value it selects ("-" when it selects none).
func entrySummary(w map[string]any) string {
	rev := "-"
	for _, sel := range []string{"namespaceSelector", "objectSelector"} {
		m, _ := w[sel].(map[string]any)
		exprs, _ := m["matchExpressions"].([]any)
		for _, e := range exprs {
			e := e.(map[string]any)
			if e["key"] == "istio.io/rev" && e["operator"] == "In" {
				rev = fmt.Sprint(e["values"].([]any)[0])
			}
		}
	}
	return strings.TrimSuffix(w["name"].(string), ".meshinject.istio.io") + " " + rev
}

// schemaNode is the part of values.schema.json the README table reads.
type schemaNode struct {
	Type        any                    `json:"type"`
	Description string                 `json:"description"`
	Properties  map[string]*schemaNode `json:"properties"`
	Enum        []any                  `json:"enum"`
}

// TestChartValuesDocumented checks every value in values.yaml has a
// described entry in values.schema.json, and that the chart's README
// lists them all (go test ./deploy -run TestChartValuesDocumented -update).
func TestChartValuesDocumented(t *testing.T) {
	var schema schemaNode
	readJSON(t, "charts/meshinject/values.schema.json", &schema)
	var values map[string]any
	data, err := os.ReadFile("charts/meshinject/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &values); err != nil {
		t.Fatal(err)
	}
	checkDocumented(t, "", values, &schema)
	var rows strings.Builder
	tableRows(&rows, "", &schema, values)
	readme, err := os.ReadFile("charts/meshinject/README.md")
	if err != nil && !*update {
		t.Fatal(err)
	}
	got := replaceTable(string(readme), rows.String())
	testutil.Golden(t, "charts/meshinject/README.md", got, *update, "go test ./deploy -run TestChartValuesDocumented -update")
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// checkDocumented walks values: each key needs a schema property with a
// description; a map value with a schema of its own properties is walked.
func checkDocumented(t *testing.T, path string, values map[string]any, node *schemaNode) {
	for k, v := range values {
		p := strings.TrimPrefix(path+"."+k, ".")
		child, ok := node.Properties[k]
		if !ok {
			t.Errorf("values.yaml %s: not in values.schema.json", p)
			continue
		}
		if child.Description == "" {
			t.Errorf("values.schema.json %s: no description", p)
		}
		if m, ok := v.(map[string]any); ok && len(child.Properties) > 0 {
			checkDocumented(t, p, m, child)
		}
	}
}

// tableRows writes a Markdown row per documented value: its path, type,
// default (from values.yaml) and description.
func tableRows(b *strings.Builder, path string, node *schemaNode, values map[string]any) {
	names := keys(node.Properties)
	for _, k := range names {
		child := node.Properties[k]
		p := strings.TrimPrefix(path+"."+k, ".")
		v, has := values[k]
		if len(child.Properties) > 0 {
			m, _ := v.(map[string]any)
			tableRows(b, p, child, m)
			continue
		}
		def := "`" + compact(v, has) + "`"
		desc := child.Description
		if len(child.Enum) > 0 {
			var e []string
			for _, x := range child.Enum {
				e = append(e, "`"+compact(x, true)+"`")
			}
			desc += " One of " + strings.Join(slices.Compact(e), ", ") + "."
		}
		fmt.Fprintf(b, "| `%s` | %s | %s | %s |\n", p, typeName(child.Type), def, strings.ReplaceAll(desc, "|", "\\|"))
	}
}

func compact(v any, has bool) string {
	if !has {
		return "unset"
	}
	data, _ := json.Marshal(v)
	return strings.ReplaceAll(string(data), "|", "\\|")
}

func typeName(t any) string {
	switch t := t.(type) {
	case []any:
		var s []string
		for _, x := range t {
			s = append(s, fmt.Sprint(x))
		}
		return strings.Join(s, " or ")
	default:
		return fmt.Sprint(t)
	}
}

const (
	tableStart = "<!-- values table: go test ./deploy -run TestChartValuesDocumented -update -->\n"
	tableEnd   = "<!-- end of values table -->\n"
)

// replaceTable puts rows between the README's table markers.
func replaceTable(readme, rows string) string {
	head, rest, ok := strings.Cut(readme, tableStart)
	if !ok {
		return readme + tableStart + tableHeader + rows + tableEnd
	}
	_, tail, _ := strings.Cut(rest, tableEnd)
	return head + tableStart + tableHeader + rows + tableEnd + tail
}

const tableHeader = "| Value | Type | Default | Description |\n|---|---|---|---|\n"

// TestImagesVersioned checks that deploy/ and the chart reference
// meshinject's image by a version, never latest or no tag.
func TestImagesVersioned(t *testing.T) {
	objs := objects(t, helmTemplate(t))
	for k, o := range objects(t, run(t, "kustomize", "build", "overlays/self-managed")) {
		objs["kustomize "+k] = o
	}
	seen := 0
	for k, o := range objs {
		if o["kind"] != "Deployment" {
			continue
		}
		spec := o["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
		for _, c := range spec["containers"].([]any) {
			image := c.(map[string]any)["image"].(string)
			seen++
			repo, tag, ok := strings.Cut(image, ":")
			if !ok || tag == "latest" || repo != "ghcr.io/meshinject/meshinject" {
				t.Errorf("%s: image %q, want ghcr.io/meshinject/meshinject:<version>", k, image)
			}
		}
	}
	if seen < 2 {
		t.Fatalf("found %d images", seen)
	}
}

// TestTagSetMatchesChart checks that meshinject tag set writes the
// configurations the chart's revisionTags render, from the revision's.
func TestTagSetMatchesChart(t *testing.T) {
	for _, mode := range []string{"cert-manager", "self-managed"} {
		objs := withoutHelmLabels(objects(t, helmTemplate(t, "revision=canary", "revisionTags={default,prod}", "tls.mode="+mode)))
		var rev admissionregistrationv1.MutatingWebhookConfiguration
		convert(t, objs["MutatingWebhookConfiguration /meshinject-sidecar-injector-canary"], &rev)
		for _, tag := range []string{"default", "prod"} {
			built, err := tags.Build(&rev, tag)
			if err != nil {
				t.Fatal(err)
			}
			var chart admissionregistrationv1.MutatingWebhookConfiguration
			convert(t, objs["MutatingWebhookConfiguration /"+tags.Name(tag)], &chart)
			if diff := cmp.Diff(&chart, built); diff != "" {
				t.Errorf("%s, tag %s (-chart +tag set):\n%s", mode, tag, diff)
			}
		}
	}
}

// convert decodes a manifest object into a typed one.
func convert(t *testing.T, o object, into any) {
	t.Helper()
	if o == nil {
		t.Fatal("no such object rendered")
	}
	data, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, into); err != nil {
		t.Fatal(err)
	}
}

// TestChartForwardsValues renders the chart's configuration ConfigMap and
// loads its values as serve does: the defaults load without a warning; a
// key injection does not read, forwarded from the chart's global, draws
// one naming it (a refusal with strictValues, which the Deployment passes
// as --strict-values); pilot and gateways values reach the injector.
func TestChartForwardsValues(t *testing.T) {
	load := func(strict bool, set ...string) (*config.Config, object, error) {
		objs := objects(t, helmTemplate(t, set...))
		cm := objs["ConfigMap meshinject/meshinject-config"]
		if cm == nil {
			t.Fatalf("no ConfigMap meshinject/meshinject-config in %v", keys(objs))
		}
		data := cm["data"].(map[string]any)
		cfg, err := config.Load(config.Sources{InjectionConfig: []byte(str(data["config"])), Values: []byte(str(data["values"])), Mesh: []byte(str(data["mesh"])), StrictValues: strict})
		return cfg, objs["Deployment meshinject/meshinject"], err
	}
	cfg, dep, err := load(false)
	if err != nil || len(cfg.Warnings) > 0 {
		t.Fatalf("the chart's defaults: err %v, warnings %q", err, cfg.Warnings)
	}
	if strings.Contains(fmt.Sprint(dep), "--strict-values") {
		t.Error("--strict-values without strictValues")
	}
	set := []string{"global.proxy.tracerr=datadog", "pilot.crlConfigMapName=corp-crl", "gateways.securityContext.runAsNonRoot=true"}
	cfg, _, err = load(false, set...)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0], "global.proxy.tracerr") {
		t.Errorf("warnings %q, want one naming global.proxy.tracerr", cfg.Warnings)
	}
	if cfg.Typed.Pilot.CRLConfigMapName != "corp-crl" {
		t.Errorf("pilot.crlConfigMapName %q, want corp-crl", cfg.Typed.Pilot.CRLConfigMapName)
	}
	if sc, _ := cfg.Values["gateways"].(map[string]any)["securityContext"].(map[string]any); sc["runAsNonRoot"] != true {
		t.Errorf("gateways.securityContext %v, want runAsNonRoot true", sc)
	}
	_, dep, err = load(true, append(set, "strictValues=true")...)
	if err == nil || !strings.Contains(err.Error(), "global.proxy.tracerr") {
		t.Errorf("strict: err %v, want a refusal naming global.proxy.tracerr", err)
	}
	if !strings.Contains(fmt.Sprint(dep), "--strict-values") {
		t.Error("strictValues=true: the Deployment does not pass --strict-values")
	}
}
