package server

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/meshinject/meshinject/certs"
	"github.com/meshinject/meshinject/test/testutil"
)

// replica is one meshinject serve on fixed ports, so it can be restarted.
type replica struct {
	opts   Options
	cancel context.CancelFunc
	done   chan error
}

func newReplica(t *testing.T, dir string, drain time.Duration) *replica {
	t.Helper()
	r := &replica{opts: Options{Host: "127.0.0.1", Port: testutil.FreePort(t), CertDir: dir, DrainDelay: drain, Log: testr.New(t)}}
	freeAddrs(t, &r.opts)
	return r
}

func (r *replica) webhookAddr() string {
	return net.JoinHostPort(r.opts.Host, strconv.Itoa(r.opts.Port))
}

// start runs the replica and waits for its /readyz.
func (r *replica) start(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	r.cancel, r.done = cancel, make(chan error, 1)
	go func() { r.done <- Run(ctx, r.opts) }()
	testutil.Eventually(t, 30*time.Second, func() bool { return readyz("http://"+r.opts.HealthAddr) == nil })
}

// stop is SIGTERM: it returns once Run has.
func (r *replica) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30s of SIGTERM")
	}
}

func readyz(url string) error {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get(url + "/readyz")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return &badResponse{code: resp.StatusCode, body: string(b)}
	}
	return nil
}

// service is a Service in front of the replicas as kube-proxy makes one:
// each new connection goes to a ready endpoint and stays there; endpoints
// follow /readyz, polled every 100ms.
type service struct {
	lis      net.Listener
	replicas []*replica
	mu       sync.Mutex
	ready    []*replica
	next     int
	conns    map[*replica]int
}

func newService(t *testing.T, replicas ...*replica) *service {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &service{lis: lis, replicas: replicas, conns: map[*replica]int{}}
	ctx := t.Context()
	var wg sync.WaitGroup
	wg.Go(func() { s.endpoints(ctx) })
	wg.Go(func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go s.forward(c)
		}
	})
	t.Cleanup(func() { _ = lis.Close(); wg.Wait() })
	testutil.Eventually(t, 10*time.Second, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.ready) == len(replicas)
	})
	return s
}

func (s *service) endpoints(ctx context.Context) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for ctx.Err() == nil {
		var ready []*replica
		for _, r := range s.replicas {
			if readyz("http://"+r.opts.HealthAddr) == nil {
				ready = append(ready, r)
			}
		}
		s.mu.Lock()
		s.ready = ready
		s.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}

func (s *service) forward(c net.Conn) {
	s.mu.Lock()
	if len(s.ready) == 0 {
		s.mu.Unlock()
		_ = c.Close()
		return
	}
	r := s.ready[s.next%len(s.ready)]
	s.next++
	s.conns[r]++
	s.mu.Unlock()
	b, err := net.Dial("tcp", r.webhookAddr())
	if err != nil {
		_ = c.Close()
		return
	}
	go func() { _, _ = io.Copy(b, c); _ = b.Close() }()
	_, _ = io.Copy(c, b)
	_ = c.Close()
}

func (s *service) connections(r *replica) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns[r]
}

// TestRollingRestartLosesNoReview: reviews run over keep-alive connections
// through a Service while each of two replicas is stopped and started again
// in turn: not one review fails, and the restarted replicas take new
// connections.
func TestRollingRestartLosesNoReview(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, err := certs.NewCA(certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	writeServing(t, ca, dir)
	a, b := newReplica(t, dir, time.Second), newReplica(t, dir, time.Second)
	a.start(t)
	b.start(t)
	svc := newService(t, a, b)
	url := "https://" + svc.lis.Addr().String()

	var requests, failures atomic.Int64
	ctx, stopLoad := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	c := client(ca, true) // the API server keeps connections alive
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				requests.Add(1)
				if err := postReview(c, url); err != nil {
					failures.Add(1)
					t.Log(time.Now().Format("05.000"), err)
				}
			}
		})
	}
	time.Sleep(500 * time.Millisecond)
	for _, r := range []*replica{a, b} {
		before := svc.connections(r)
		t.Logf("%s: SIGTERM", time.Now().Format("05.000"))
		r.stop(t)
		t.Logf("%s: stopped", time.Now().Format("05.000"))
		r.start(t)
		t.Logf("%s: started", time.Now().Format("05.000"))
		testutil.Eventually(t, 10*time.Second, func() bool { return svc.connections(r) > before })
		time.Sleep(500 * time.Millisecond)
	}
	stopLoad()
	wg.Wait()
	a.stop(t)
	b.stop(t)
	t.Logf("%d reviews through two restarts, %d failed", requests.Load(), failures.Load())
	if failures.Load() != 0 {
		t.Errorf("%d of %d reviews failed across the restarts", failures.Load(), requests.Load())
	}
}
