package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/meshinject/meshinject/hack/benchpods"
	"github.com/meshinject/meshinject/webhook"
)

// answer is what a review must get back.
type answer int

const (
	injected answer = iota // allowed with a patch
	tooLarge               // denied, naming --max-pod-bytes
	refused                // a 400 for a pod that does not decode
)

// kind is one kind of review in the mix.
type kind struct {
	name string
	pod  []byte
	want answer
}

// mix sends ordinary reviews (the medium benchmark pod) with one hostile
// review in every `every`, taking the hostile kinds in turn.
type mix struct {
	ordinary kind
	hostile  []kind
	every    int64
	n        atomic.Int64
}

func newMix(every int) *mix {
	m := &mix{every: int64(max(every, 1))}
	for _, p := range benchpods.All() {
		if p.Name == "medium" {
			m.ordinary = kind{name: "ordinary", pod: p.JSON}
		}
	}
	near := webhook.DefaultMaxPodBytes * 9 / 10
	for name, build := range benchpods.Hostile() {
		k := kind{name: name, pod: benchpods.LargestUnder(build, near)}
		if name == "deep JSON" {
			k.want = refused
		}
		m.hostile = append(m.hostile, k)
	}
	m.hostile = append(m.hostile, kind{name: "over the limit", want: tooLarge,
		pod: benchpods.LargestUnder(benchpods.Hostile()["labels"], 2<<20)})
	return m
}

// send sends the next review and records the outcome.
func (m *mix) send(ctx context.Context, c *http.Client, url string, st *stats) {
	i := m.n.Add(1)
	k := m.ordinary
	if i%m.every == 0 {
		k = m.hostile[int(i/m.every)%len(m.hostile)]
	}
	start := time.Now()
	err := post(ctx, c, url, review(k.pod, i), k.want)
	if ctx.Err() != nil {
		return // the soak ended mid-request
	}
	st.record(k.name != "ordinary", time.Since(start), err)
}

func review(pod []byte, i int64) []byte {
	return []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u-` + strconv.FormatInt(i, 10) +
		`","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},` +
		`"namespace":"shop","operation":"CREATE","object":` + string(pod) + `}}`)
}

// post sends one review and checks the answer.
func post(ctx context.Context, c *http.Client, url string, body []byte, want answer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var rv struct {
		Response struct {
			Allowed bool   `json:"allowed"`
			Patch   []byte `json:"patch"`
			Status  *struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"status"`
		} `json:"response"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(out, &rv) != nil {
		return fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, out)
	}
	r := rv.Response
	switch {
	case want == injected && r.Allowed && len(r.Patch) > 0:
	case want == tooLarge && !r.Allowed && r.Status != nil && strings.Contains(r.Status.Message, "--max-pod-bytes"):
	case want == refused && !r.Allowed && r.Status != nil && r.Status.Code == http.StatusBadRequest:
	default:
		return fmt.Errorf("unexpected answer: %.300s", out)
	}
	return nil
}
