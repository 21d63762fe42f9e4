package benchpods

import (
	"fmt"
	"strings"
)

// Hostile returns builders of pods that grow one dimension to n: what
// anyone who may create a pod can send to make a review expensive. The
// hostile-pod tests and the soak use them.
func Hostile() map[string]func(n int) []byte {
	return map[string]func(n int) []byte{
		"labels":            func(n int) []byte { return metaPod("labels", members("l", n)) },
		"annotations":       func(n int) []byte { return metaPod("annotations", members("a", n)) },
		"probed containers": probedContainers,
		"template names": func(n int) []byte {
			return metaPod("annotations", `"inject.istio.io/templates":"`+strings.Repeat("sidecar,", n)+`sidecar"`)
		},
		"env entries": func(n int) []byte {
			var b strings.Builder
			for i := range n {
				fmt.Fprintf(&b, `,{"name":"E%d","value":"v"}`, i)
			}
			return fmt.Appendf(nil, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"app","image":"i","env":[%s]}]}}`, b.String()[1:])
		},
		"deep JSON": func(n int) []byte {
			return fmt.Appendf(nil, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"app","image":"i"}],"x":%s1%s}}`,
				strings.Repeat("[", n), strings.Repeat("]", n))
		},
	}
}

// members is n object members "<prefix><i>":"v", comma-separated.
func members(prefix string, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"%s%d":"v"`, prefix, i)
	}
	return b.String()
}

// metaPod is a one-container pod whose metadata field (labels or
// annotations) holds the members.
func metaPod(field, members string) []byte {
	return fmt.Appendf(nil, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","%s":{%s}},"spec":{"containers":[{"name":"app","image":"registry.example/app:1","ports":[{"containerPort":8080}]}]}}`, field, members)
}

func probedContainers(n int) []byte {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"name":"c%d","image":"i","ports":[{"containerPort":8080}],"readinessProbe":{"httpGet":{"path":"/r","port":8080}}}`, i)
	}
	return fmt.Appendf(nil, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[%s]}}`, b.String())
}

// LargestUnder returns the largest pod build makes that is at most limit
// bytes.
func LargestUnder(build func(int) []byte, limit int) []byte {
	lo, hi := 1, 2
	for len(build(hi)) <= limit {
		lo, hi = hi, 2*hi
	}
	for hi-lo > 1 {
		if mid := (lo + hi) / 2; len(build(mid)) <= limit {
			lo = mid
		} else {
			hi = mid
		}
	}
	return build(lo)
}
