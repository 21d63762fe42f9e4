package app

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/meshinject/meshinject/cmd/meshinject/app/explain"
	"github.com/meshinject/meshinject/test/testutil"
)

// TestExplainGolden runs explain on each case of testdata/explain, as text
// and as JSON, against the goldens (<case>.explain, <case>.explain-json;
// refresh with -update).
func TestExplainGolden(t *testing.T) {
	t.Parallel()
	cases := testutil.ManifestCases(t, "testdata/explain")
	if len(cases) < 8 {
		t.Fatalf("%d explain cases, want at least 8", len(cases))
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			for suffix, extra := range map[string][]string{".explain": nil, ".explain-json": {"-o", "json"}} {
				stdout, stderr, code := run(t, nil, append(append([]string{"explain", "-f", c.Path}, c.Flags...), extra...)...)
				testutil.Golden(t, c.Path+suffix, goldenText(stdout, stderr, code), *update, "go test ./cmd/meshinject/app -run TestExplainGolden -update")
			}
		})
	}
}

// TestExplainDecisions: the decisions explain gives for the cases are the
// ones each case is about (read from the JSON form).
func TestExplainDecisions(t *testing.T) {
	t.Parallel()
	want := map[string]struct {
		result string
		sent   bool
		reason string
	}{
		"enabled.yaml":           {"injected", true, ""},
		"unlabelled.yaml":        {"not-sent", false, "the engine would inject it"},
		"opted-out.yaml":         {"not-sent", false, "skip it: label sidecar.istio.io/inject=false"},
		"host-network.yaml":      {"not-sent", false, "skip it: pod has hostNetwork"}, // the match condition
		"annotation-opt-in.yaml": {"not-sent", false, "the engine would inject it"},
		"denied.yaml":            {"denied", true, `invalid sidecar.istio.io/proxyCPU "fast"`},
		"gateway.yaml":           {"injected", true, ""},
		"canary.yaml":            {"injected", true, ""},
		"values-unread-key.yaml": {"injected", true, ""},
	}
	for _, c := range testutil.ManifestCases(t, "testdata/explain") {
		w, ok := want[strings.TrimPrefix(c.Name, "explain/")]
		if !ok {
			t.Errorf("%s: no expected decision", c.Name)
			continue
		}
		stdout, stderr, code := run(t, nil, append([]string{"explain", "-o", "json", "-f", c.Path}, c.Flags...)...)
		if code != 0 {
			t.Fatalf("%s: %s", c.Name, stderr)
		}
		var doc struct{ Items []explain.Report }
		if err := json.Unmarshal([]byte(stdout), &doc); err != nil || len(doc.Items) != 1 {
			t.Fatalf("%s: %v: %s", c.Name, err, stdout)
		}
		r := doc.Items[0]
		if string(r.Decision.Result) != w.result || r.Webhook.Sent != w.sent || !strings.Contains(r.Decision.Reason, w.reason) {
			t.Errorf("%s: decision %s (%q), sent %v; want %s containing %q, sent %v", c.Name, r.Decision.Result, r.Decision.Reason, r.Webhook.Sent, w.result, w.reason, w.sent)
		}
		if w.result == "injected" && r.Diff == "" {
			t.Errorf("%s: injected without a diff", c.Name)
		}
	}
}
