package cli

import (
	"strings"
	"testing"
)

func TestServeRejectsBadGCPercent(t *testing.T) {
	for _, v := range []string{"0", "-1"} {
		_, stderr, code := run(t, nil, "serve", "--gc-percent", v, "--port", "0")
		if code == 0 || !strings.Contains(stderr, "--gc-percent "+v) {
			t.Errorf("serve --gc-percent %s: exit %d, stderr %q; want an error naming the flag and value", v, code, stderr)
		}
	}
}
