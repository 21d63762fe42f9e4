package main

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
)

// answer is an AdmissionReview response carrying patch.
func answer(patch string) []byte {
	return []byte(`{"response":{"allowed":true,"patch":"` + base64.StdEncoding.EncodeToString([]byte(patch)) + `"}}`)
}

func TestCheckInjected(t *testing.T) {
	body := review([]byte(`{"spec":{"containers":[{"name":"app"}]}}`), 0)
	for _, c := range []struct {
		name, patch, want string
	}{
		{"adds istio-proxy", `[{"op":"add","path":"/spec/containers/-","value":{"name":"istio-proxy"}}]`, ""},
		{"native sidecar", `[{"op":"add","path":"/spec/initContainers","value":[{"name":"istio-proxy"}]}]`, ""},
		{"no proxy", `[{"op":"add","path":"/metadata","value":{}}]`, "no istio-proxy"},
		{"does not apply", `[{"op":"replace","path":"/spec/volumes/0","value":{}}]`, "does not apply"},
	} {
		err := checkInjected("x", body, answer(c.patch))
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	if err := checkInjected("x", body, []byte(`{"response":{"allowed":true}}`)); err == nil {
		t.Error("an answer without a patch passed")
	}
}

// TestDistinct: the mix is reproducible from its seed, has n workloads
// whose replicas follow each other, and workloads differ.
func TestDistinct(t *testing.T) {
	a, b := distinct(50, 7), distinct(50, 7)
	if len(a.bodies) != len(b.bodies) {
		t.Fatalf("same seed, %d and %d bodies", len(a.bodies), len(b.bodies))
	}
	for i := range a.bodies {
		if !bytes.Equal(a.bodies[i], b.bodies[i]) {
			t.Fatalf("same seed, body %d differs", i)
		}
	}
	pods := map[string]int{}
	var order []string
	for _, body := range a.bodies {
		pod := string(body[bytes.Index(body, []byte(`"object":`)):])
		if _, seen := pods[pod]; !seen {
			order = append(order, pod)
		} else if order[len(order)-1] != pod {
			t.Fatal("a workload's replicas are not reviewed in a row")
		}
		pods[pod]++
	}
	if len(pods) != 50 {
		t.Errorf("%d distinct pods, want 50", len(pods))
	}
	for _, n := range pods {
		if n < 1 || n > 5 {
			t.Errorf("a workload has %d replicas, want 1 to 5", n)
		}
	}
	if c := distinct(50, 8); bytes.Equal(c.bodies[0], a.bodies[0]) {
		t.Error("another seed gave the same first pod")
	}
}
