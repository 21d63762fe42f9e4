package templates

import (
	"slices"
	"strings"
	"text/template"
	"text/template/parse"
)

// ValueReads returns the .Values paths t and its named templates read, as
// dotted paths, sorted and without repeats: .Values.global.proxy.image
// gives "global.proxy.image", (.Values.pilot.env).KEY "pilot.env.KEY", and
// a bare .Values or $.Values "" (the whole tree).
func ValueReads(t *template.Template) []string {
	seen := map[string]bool{}
	for _, tt := range t.Templates() {
		if tt.Tree != nil {
			valueReads(tt.Tree.Root, seen)
		}
	}
	out := make([]string, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// valuesPath is the path a field chain reads under .Values, if it does.
func valuesPath(ident []string) (string, bool) {
	if len(ident) == 0 || ident[0] != "Values" {
		return "", false
	}
	return strings.Join(ident[1:], "."), true
}

func valueReads(n parse.Node, seen map[string]bool) {
	switch n := n.(type) {
	case *parse.ListNode:
		if n != nil {
			for _, c := range n.Nodes {
				valueReads(c, seen)
			}
		}
	case *parse.ActionNode:
		valueReads(n.Pipe, seen)
	case *parse.IfNode:
		valueReadsBranch(&n.BranchNode, seen)
	case *parse.RangeNode:
		valueReadsBranch(&n.BranchNode, seen)
	case *parse.WithNode:
		valueReadsBranch(&n.BranchNode, seen)
	case *parse.TemplateNode:
		valueReads(n.Pipe, seen)
	case *parse.PipeNode:
		if n != nil {
			for _, c := range n.Cmds {
				valueReads(c, seen)
			}
		}
	case *parse.CommandNode:
		for _, a := range n.Args {
			valueReads(a, seen)
		}
	case *parse.FieldNode:
		if p, ok := valuesPath(n.Ident); ok {
			seen[p] = true
		}
	case *parse.VariableNode:
		if len(n.Ident) > 1 {
			if p, ok := valuesPath(n.Ident[1:]); ok {
				seen[p] = true
			}
		}
	case *parse.ChainNode:
		if p, ok := n.Node.(*parse.PipeNode); ok && len(p.Cmds) == 1 && len(p.Cmds[0].Args) == 1 {
			if f, ok := p.Cmds[0].Args[0].(*parse.FieldNode); ok {
				if base, ok := valuesPath(f.Ident); ok {
					seen[strings.Trim(base+"."+strings.Join(n.Field, "."), ".")] = true
					return
				}
			}
		}
		valueReads(n.Node, seen)
	}
}

func valueReadsBranch(b *parse.BranchNode, seen map[string]bool) {
	valueReads(b.Pipe, seen)
	valueReads(b.List, seen)
	valueReads(b.ElseList, seen)
}
