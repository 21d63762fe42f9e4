// Package testutil holds helpers shared by the tests of several packages.
package testutil

import (
	"errors"
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
