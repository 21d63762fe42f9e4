package app

import (
	"runtime/debug"
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

func TestMemoryLimit(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "")
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	soft, err := applyMemoryLimit("268435456")
	if err != nil || soft != 268435456/100*30 || debug.SetMemoryLimit(-1) != soft {
		t.Errorf("--memory-limit 256Mi in bytes: soft limit %d (%v), runtime %d; want 30%%", soft, err, debug.SetMemoryLimit(-1))
	}
	if soft, err := applyMemoryLimit("1Gi"); err != nil || soft != (1<<30)/100*30 {
		t.Errorf("--memory-limit 1Gi: %d, %v", soft, err)
	}
	if _, err := applyMemoryLimit("lots"); err == nil || !strings.Contains(err.Error(), `--memory-limit "lots"`) {
		t.Errorf("--memory-limit lots: %v, want an error naming the flag and value", err)
	}
	t.Setenv("GOMEMLIMIT", "1GiB")
	if soft, _ := applyMemoryLimit("1Gi"); soft != 0 {
		t.Error("--memory-limit applied although GOMEMLIMIT is set")
	}
}

func TestParseMaxPodBytes(t *testing.T) {
	for in, want := range map[string]int{"1Mi": 1 << 20, "512Ki": 512 << 10, "2000000": 2000000} {
		if got, err := parseMaxPodBytes(in); err != nil || got != want {
			t.Errorf("--max-pod-bytes %s: %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"0", "-1Mi", "1Gi", "big"} {
		if _, err := parseMaxPodBytes(in); err == nil || !strings.Contains(err.Error(), "--max-pod-bytes") {
			t.Errorf("--max-pod-bytes %s: err %v, want a refusal naming the flag", in, err)
		}
	}
}
