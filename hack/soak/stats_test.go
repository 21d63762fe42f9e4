package main

import (
	"errors"
	"strings"
	"testing"
)

// TestVerdict: a soak fails on unreadable metrics, on goroutines that grow
// and on a heap that grows, and passes a steady run.
func TestVerdict(t *testing.T) {
	const mib = 1 << 20
	steady := []row{{heap: 40 * mib, goroutines: 26}, {heap: 60 * mib, goroutines: 27}, {heap: 35 * mib, goroutines: 26}, {heap: 55 * mib, goroutines: 26}}
	growing := []row{{heap: 30 * mib, goroutines: 26}, {heap: 32 * mib, goroutines: 26}, {heap: 90 * mib, goroutines: 26}, {heap: 120 * mib, goroutines: 26}}
	leaking := []row{{heap: 40 * mib, goroutines: 26}, {heap: 40 * mib, goroutines: 80}}
	unreadable := []row{{heap: 40 * mib, goroutines: 26}, {metricsErr: errors.New("connection refused")}}
	for _, c := range []struct {
		name string
		rows []row
		want string
	}{
		{"steady", steady, ""},
		{"growing heap", growing, "the heap in use grew"},
		{"leaking goroutines", leaking, "goroutines grew from 26 to 80"},
		{"unreadable metrics", unreadable, "row 2: the server's metrics could not be read: connection refused"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := verdict(c.rows, newStats(), 256*mib)
			switch {
			case c.want == "" && err != nil:
				t.Errorf("verdict failed a steady run: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Errorf("verdict = %v, want an error containing %q", err, c.want)
			}
		})
	}
}
