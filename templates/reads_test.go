package templates

import (
	"slices"
	"testing"
	"text/template"
)

func TestValueReads(t *testing.T) {
	t.Parallel()
	text := `{{ define "x" }}{{ .Values.global.a }}{{ end }}{{ template "x" . }}{{ template "x" }}` +
		`{{ if eq (.Values.pilot.env).FLAG true }}{{ range $.Values.b.c }}{{ . }}{{ end }}{{ end }}` +
		`{{ with .Values.d }}{{ .e }}{{ end }}{{ .ProxyConfig.Values }}`
	tmpl, err := template.New("t").Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"b.c", "d", "global.a", "pilot.env.FLAG"}
	if got := ValueReads(tmpl); !slices.Equal(got, want) {
		t.Errorf("ValueReads = %q, want %q", got, want)
	}
}
