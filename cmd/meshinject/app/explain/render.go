package explain

import (
	"fmt"
	"io"
	"strings"

	"github.com/pmezard/go-difflib/difflib"
)

// unifiedDiff is the unified diff of before and after, three lines of
// context.
func unifiedDiff(before, after string) string {
	d, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A: difflib.SplitLines(before), B: difflib.SplitLines(after),
		FromFile: "before", ToFile: "after", Context: 3,
	})
	if err != nil {
		return ""
	}
	return d
}

// Terminal colours for the diff.
const (
	red   = "\x1b[31m"
	green = "\x1b[32m"
	reset = "\x1b[0m"
)

// WriteText writes r for people; colour adds terminal colours to the
// diff.
func WriteText(w io.Writer, r Report, colour bool) {
	o := r.Object
	fmt.Fprintf(w, "%s %s/%s\n", strings.ToLower(o.Kind), o.Namespace, o.Name)
	fmt.Fprintf(w, "  webhook %s: ", r.Webhook.Configuration)
	if r.Webhook.Sent {
		fmt.Fprintln(w, "called")
	} else {
		fmt.Fprintln(w, "not called")
	}
	for _, e := range r.Webhook.Entries {
		mark := "✘"
		if e.Matches {
			mark = "✔"
		}
		fmt.Fprintf(w, "    %s %s: %s\n", mark, e.Name, e.Reason)
	}
	d := r.Decision
	fmt.Fprintf(w, "  decision: %s", d.Result)
	if d.Reason != "" {
		fmt.Fprintf(w, ": %s", d.Reason)
	}
	fmt.Fprintln(w)
	if t := r.Templates; t != nil {
		fmt.Fprintf(w, "  templates: %s (%s)\n", strings.Join(t.Names, ", "), t.Source)
		for alias, names := range t.Aliases {
			fmt.Fprintf(w, "    alias %s: %s\n", alias, strings.Join(names, ", "))
		}
	}
	if len(r.Annotations) > 0 {
		fmt.Fprintln(w, "  annotations that change the output:")
		for _, a := range r.Annotations {
			fmt.Fprintf(w, "    %s: %q\n", a.Name, a.Value)
		}
	}
	for _, warn := range r.Warnings {
		fmt.Fprintf(w, "  warning: %s\n", warn)
	}
	for _, h := range r.Hints {
		fmt.Fprintf(w, "  hint: %s\n", h)
	}
	if r.Diff != "" {
		fmt.Fprintln(w, "  diff:")
		for _, line := range strings.SplitAfter(r.Diff, "\n") {
			if line == "" {
				continue
			}
			switch {
			case colour && strings.HasPrefix(line, "+") && !strings.HasPrefix(line, "+++"):
				line = green + strings.TrimSuffix(line, "\n") + reset + "\n"
			case colour && strings.HasPrefix(line, "-") && !strings.HasPrefix(line, "---"):
				line = red + strings.TrimSuffix(line, "\n") + reset + "\n"
			}
			fmt.Fprintf(w, "    %s", line)
		}
	}
}
