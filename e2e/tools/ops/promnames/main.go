// Command promnames prints, one per line and sorted, the metric names that
// Prometheus rule files and Grafana dashboards query, parsing each
// expression with Prometheus' own PromQL parser.
//
//	promnames FILE...
//
// A .json file is a Grafana dashboard: the expressions are the panels'
// targets (Grafana's $__rate_interval and $variables are replaced before
// parsing) and label_values(METRIC, ...) in its variables. Any other file is
// a rule file (groups[].rules[].expr).
package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

func main() {
	names := map[string]bool{}
	for _, f := range os.Args[1:] {
		if err := collect(f, names); err != nil {
			fmt.Fprintln(os.Stderr, "promnames:", err)
			os.Exit(1)
		}
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	for _, n := range sorted {
		fmt.Println(n)
	}
}

func collect(file string, names map[string]bool) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var exprs []string
	if filepath.Ext(file) == ".json" {
		exprs, err = dashboardExprs(data, names)
	} else {
		exprs, err = ruleExprs(data)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	for _, e := range exprs {
		if err := exprNames(e, names); err != nil {
			return fmt.Errorf("%s: %q: %w", file, e, err)
		}
	}
	return nil
}

func ruleExprs(data []byte) ([]string, error) {
	groups, errs := rulefmt.Parse(data, false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
	if len(errs) > 0 {
		return nil, errs[0]
	}
	var exprs []string
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
		}
	}
	return exprs, nil
}

var (
	grafanaVar  = regexp.MustCompile(`\$\{?[A-Za-z_]\w*\}?`)
	labelValues = regexp.MustCompile(`label_values\(\s*([A-Za-z_:][\w:]*)\s*,`)
)

type dashboard struct {
	Panels []struct {
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
	Templating struct {
		List []struct {
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

func dashboardExprs(data []byte, names map[string]bool) ([]string, error) {
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, err
	}
	var exprs []string
	for _, p := range d.Panels {
		for _, t := range p.Targets {
			e := regexp.MustCompile(`\$__rate_interval|\$__interval|\$__range`).ReplaceAllString(t.Expr, "5m")
			exprs = append(exprs, grafanaVar.ReplaceAllString(e, "x"))
		}
	}
	for _, v := range d.Templating.List {
		for _, m := range labelValues.FindAllStringSubmatch(v.Definition, -1) {
			names[m[1]] = true
		}
	}
	return exprs, nil
}

func exprNames(expr string, names map[string]bool) error {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return err
	}
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok && vs.Name != "" {
			names[vs.Name] = true
		}
		return nil
	})
	return nil
}
