// Package testutil holds helpers shared by the tests of several packages.
package testutil

import (
	"errors"
	"net"
	"testing"
	"time"
)

// Eventually polls cond every 20ms and fails the test if it is not true
// within timeout.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool) {
	t.Helper()
	Poll(t, timeout, 20*time.Millisecond, "condition", func() error {
		if cond() {
			return nil
		}
		return errors.New("not met")
	})
}

// Poll calls cond every interval until it returns nil, and fails the test
// with what and cond's last error if that does not happen within timeout.
func Poll(t testing.TB, timeout, interval time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not done within %s: %v", what, timeout, err)
		}
		time.Sleep(interval)
	}
}

// FreePort returns a TCP port free on 127.0.0.1 now.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}
