package templates

import (
	"slices"
	"strings"
	"text/template"
	"text/template/parse"
)

// Inspect walks a template parse tree depth first, calling visit on every
// node; when visit returns false, the node's children are not visited.
func Inspect(n parse.Node, visit func(parse.Node) bool) {
	if n == nil || !visit(n) {
		return
	}
	var children []parse.Node
	switch n := n.(type) {
	case *parse.ListNode:
		if n != nil {
			children = n.Nodes
		}
	case *parse.ActionNode:
		children = []parse.Node{n.Pipe}
	case *parse.IfNode:
		children = branch(&n.BranchNode)
	case *parse.RangeNode:
		children = branch(&n.BranchNode)
	case *parse.WithNode:
		children = branch(&n.BranchNode)
	case *parse.TemplateNode:
		if n.Pipe != nil { // {{ template "name" }} has none
			children = []parse.Node{n.Pipe}
		}
	case *parse.PipeNode:
		if n != nil {
			for _, c := range n.Cmds {
				children = append(children, c)
			}
		}
	case *parse.CommandNode:
		children = n.Args
	case *parse.ChainNode:
		children = []parse.Node{n.Node}
	}
	for _, c := range children {
		Inspect(c, visit)
	}
}

// branch are the parts of an if, range or with; a nil list or pipe is
// left out (a typed nil is not a nil Node).
func branch(b *parse.BranchNode) []parse.Node {
	var out []parse.Node
	if b.Pipe != nil {
		out = append(out, b.Pipe)
	}
	if b.List != nil {
		out = append(out, b.List)
	}
	if b.ElseList != nil {
		out = append(out, b.ElseList)
	}
	return out
}

// ValuesPath is the dotted .Values path a node reads, if it reads one:
// .Values.global.proxy.image gives "global.proxy.image", $.Values.a "a",
// (.Values.pilot.env).KEY "pilot.env.KEY" and a bare .Values "" (the
// whole tree).
func ValuesPath(n parse.Node) (string, bool) {
	switch n := n.(type) {
	case *parse.FieldNode:
		return valuesPath(n.Ident)
	case *parse.VariableNode:
		if len(n.Ident) > 1 {
			return valuesPath(n.Ident[1:])
		}
	case *parse.ChainNode:
		if p, ok := n.Node.(*parse.PipeNode); ok && len(p.Cmds) == 1 && len(p.Cmds[0].Args) == 1 {
			if base, ok := ValuesPath(p.Cmds[0].Args[0]); ok {
				return strings.Trim(base+"."+strings.Join(n.Field, "."), "."), true
			}
		}
	}
	return "", false
}

// valuesPath is the path a field chain reads under .Values, if it does.
func valuesPath(ident []string) (string, bool) {
	if len(ident) == 0 || ident[0] != "Values" {
		return "", false
	}
	return strings.Join(ident[1:], "."), true
}

// ValueReads returns the .Values paths t and its named templates read
// (see ValuesPath), sorted and without repeats.
func ValueReads(t *template.Template) []string {
	seen := map[string]bool{}
	for _, tt := range t.Templates() {
		if tt.Tree == nil {
			continue
		}
		Inspect(tt.Root, func(n parse.Node) bool {
			p, ok := ValuesPath(n)
			if ok {
				seen[p] = true
			}
			return !ok // a chain's inner .Values is part of its path
		})
	}
	out := make([]string, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}
