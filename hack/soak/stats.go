package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// stats are the outcomes since the last row, and the totals.
type stats struct {
	mu                  sync.Mutex
	ordinary, hostile   []time.Duration
	errs                int
	total, hostileTotal int
	errTotal            int
	firstErr            error
}

func newStats() *stats { return &stats{} }

func (s *stats) record(hostile bool, d time.Duration, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total++
	if hostile {
		s.hostileTotal++
		s.hostile = append(s.hostile, d)
	} else {
		s.ordinary = append(s.ordinary, d)
	}
	if err != nil {
		s.errs++
		s.errTotal++
		if s.firstErr == nil {
			s.firstErr = err
		}
	}
}

// take returns the interval's latencies and errors and starts the next.
func (s *stats) take() (ordinary, hostile []time.Duration, errs int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ordinary, hostile, errs = s.ordinary, s.hostile, s.errs
	s.ordinary, s.hostile, s.errs = nil, nil, 0
	return ordinary, hostile, errs
}

// row is one interval's figures.
type row struct {
	rss, heap  int64 // bytes
	goroutines int
	// metricsErr is why the server's metrics could not be read.
	metricsErr error
}

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[min(len(d)-1, int(q*float64(len(d))))]
}

// report prints a row every interval until ctx ends and returns the rows.
func report(ctx context.Context, srv *server, st *stats, interval time.Duration) []row {
	fmt.Printf("%-6s %9s %8s %10s %10s %10s %10s %7s\n", "row", "reviews", "hostile", "p99", "p99 host.", "RSS MiB", "heap MiB", "gorout.")
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var rows []row
	for i := 1; ; i++ {
		select {
		case <-ctx.Done():
			return rows
		case <-tick.C:
		}
		ord, host, errs := st.take()
		r := row{rss: rss(srv.cmd.Process.Pid)}
		r.goroutines, r.heap, r.metricsErr = serverMetrics(srv.metrics)
		rows = append(rows, r)
		fmt.Printf("%-6d %9d %8d %10v %10v %10.1f %10.1f %7d", i, len(ord)+len(host), len(host),
			quantile(ord, 0.99).Round(10*time.Microsecond), quantile(host, 0.99).Round(time.Millisecond),
			float64(r.rss)/(1<<20), float64(r.heap)/(1<<20), r.goroutines)
		if errs > 0 {
			fmt.Printf("  %d errors", errs)
		}
		if r.metricsErr != nil {
			fmt.Printf("  metrics: %v", r.metricsErr)
		}
		fmt.Println()
	}
}

// rss is the process's resident set in bytes (0 if unreadable).
func rss(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// serverMetrics reads go_goroutines and the heap in use from serve's
// /metrics (url); an error when either cannot be read.
func serverMetrics(url string) (goroutines int, heap int64, err error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("GET %s: HTTP %d", url, resp.StatusCode)
	}
	found := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			if goroutines, err = strconv.Atoi(v); err != nil {
				return 0, 0, fmt.Errorf("go_goroutines %q: %w", v, err)
			}
			found++
		}
		if v, ok := strings.CutPrefix(sc.Text(), "go_memstats_heap_inuse_bytes "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, 0, fmt.Errorf("go_memstats_heap_inuse_bytes %q: %w", v, err)
			}
			heap = int64(f)
			found++
		}
	}
	if found != 2 {
		return 0, 0, fmt.Errorf("%s lacks go_goroutines or go_memstats_heap_inuse_bytes", url)
	}
	return goroutines, heap, sc.Err()
}

// verdict fails the soak on any error, an RSS over half the limit,
// metrics it could not read, goroutines that grew from the first row to
// the last, or a heap that grew (heapGrew).
func verdict(rows []row, st *stats, limit int64) error {
	var maxRSS int64
	for _, r := range rows {
		maxRSS = max(maxRSS, r.rss)
	}
	fmt.Printf("%d reviews (%d hostile), %d errors, RSS at most %.1f MiB (limit %.0f MiB)\n",
		st.total, st.hostileTotal, st.errTotal, float64(maxRSS)/(1<<20), float64(limit)/(1<<20))
	var errs []error
	if st.errTotal > 0 {
		errs = append(errs, fmt.Errorf("%d reviews failed; the first: %w", st.errTotal, st.firstErr))
	}
	if maxRSS > limit/2 {
		errs = append(errs, fmt.Errorf("RSS reached %.1f MiB, over half the %.0f MiB limit", float64(maxRSS)/(1<<20), float64(limit)/(1<<20)))
	}
	for i, r := range rows {
		if r.metricsErr != nil {
			errs = append(errs, fmt.Errorf("row %d: the server's metrics could not be read: %w", i+1, r.metricsErr))
			return errors.Join(errs...) // the growth checks need them
		}
	}
	if len(rows) >= 2 && rows[len(rows)-1].goroutines > rows[0].goroutines+20 {
		errs = append(errs, fmt.Errorf("goroutines grew from %d to %d", rows[0].goroutines, rows[len(rows)-1].goroutines))
	}
	if first, last, grew := heapGrew(rows); grew {
		errs = append(errs, fmt.Errorf("the heap in use grew: median %.1f MiB over the first half of the rows, %.1f MiB over the second", float64(first)/(1<<20), float64(last)/(1<<20)))
	}
	if len(rows) == 0 {
		errs = append(errs, errors.New("no row: the duration is shorter than the interval"))
	}
	return errors.Join(errs...)
}

// heapGrew compares the median heap in use of the first and the second
// half of the rows: the heap swings between collections (up to the soft
// memory limit), so only a second half whose median is over 1.5 times the
// first's plus 16 MiB counts as growth.
func heapGrew(rows []row) (first, last int64, grew bool) {
	if len(rows) < 2 {
		return 0, 0, false
	}
	median := func(rs []row) int64 {
		h := make([]int64, len(rs))
		for i, r := range rs {
			h[i] = r.heap
		}
		slices.Sort(h)
		return h[len(h)/2]
	}
	half := len(rows) / 2
	first, last = median(rows[:half]), median(rows[half:])
	return first, last, last > first+first/2+16<<20
}
