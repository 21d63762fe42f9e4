package testutil

import (
	"bufio"
	"strings"
)

// MetricNames are the sample names of a Prometheus text exposition
// (histograms' _bucket, _sum and _count included).
func MetricNames(exposition string) map[string]bool {
	names := map[string]bool{}
	s := bufio.NewScanner(strings.NewReader(exposition))
	s.Buffer(make([]byte, 0, 1<<20), 1<<20)
	for s.Scan() {
		l := s.Text()
		if l == "" || l[0] == '#' {
			continue
		}
		if i := strings.IndexAny(l, "{ "); i > 0 {
			names[l[:i]] = true
		}
	}
	return names
}
