package prometheus

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/mcpauth/mcpauth"
)

// TestSinkCountsRequireDecisions puts the sink behind Require and checks
// the counters and the latency histogram that its decisions produce, and
// that the events go on to Next.
func TestSinkCountsRequireDecisions(t *testing.T) {
	reg := prometheus.NewRegistry()
	var next countSink
	s, err := New(&Options{Registerer: reg, Next: &next})
	if err != nil {
		t.Fatal(err)
	}
	key, err := mcpauth.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	keys, err := mcpauth.NewAPIKeys(mcpauth.APIKey{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	h := mcpauth.Require(&mcpauth.RequireOptions{Events: s, SuccessEventInterval: -1}, keys)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	for i, k := range []string{key, key, key, "mcpk_wrong", ""} {
		r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
		r.RemoteAddr = "192.0.2." + strconv.Itoa(i) + ":1"
		if k != "" {
			r.Header.Set("X-API-Key", k)
		}
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	tests := []struct {
		labels []string
		want   float64
	}{
		{[]string{"authentication", "success", "apikey", ""}, 3},
		{[]string{"authentication", "failure", "apikey", "malformed"}, 1},
		{[]string{"authentication", "failure", "", "no_credentials"}, 1},
		{[]string{"configuration", "success", "", ""}, 1}, // Require's configuration, loaded
	}
	for _, tt := range tests {
		if got := counter(t, reg, "mcpauth_events_total", tt.labels...); got != tt.want {
			t.Errorf("events_total%v = %v, want %v", tt.labels, got, tt.want)
		}
	}
	hist := series(t, reg, "mcpauth_decision_seconds")
	if len(hist) != 2 {
		t.Fatalf("%d latency series, want 2 (success, failure)", len(hist))
	}
	for _, m := range hist {
		if m.GetHistogram().GetSampleCount() == 0 {
			t.Errorf("latency series %v observed nothing", m.GetLabel())
		}
	}
	if next.n != 6 {
		t.Errorf("Next saw %d events, want 6 (5 decisions and the configuration)", next.n)
	}
}

// series returns the metrics of one family.
func series(t *testing.T, reg *prometheus.Registry, name string) []*dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()
		}
	}
	return nil
}

// counter returns the value of the counter with the label values, in the
// order of the labels' names.
func counter(t *testing.T, reg *prometheus.Registry, name string, values ...string) float64 {
	t.Helper()
	for _, m := range series(t, reg, name) {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		match := len(values) == 0
		for i, n := range []string{"kind", "outcome", "method", "reason"}[:len(values)] {
			if match = got[n] == values[i]; !match {
				break
			}
		}
		if match {
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// TestSinkBoundsLabels sends events with many distinct reasons: each
// label keeps at most MaxValues of them, the rest counted as "other".
func TestSinkBoundsLabels(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, err := New(&Options{Registerer: reg, MaxValues: 8})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		s.Record(context.Background(), mcpauth.Event{Kind: mcpauth.EventAuthentication, Outcome: mcpauth.OutcomeFailure, Reason: "reason-" + strconv.Itoa(i)})
	}
	s.Record(context.Background(), mcpauth.Event{Kind: mcpauth.EventAuthentication, Outcome: mcpauth.OutcomeFailure, Reason: strings.Repeat("x", 100)})
	if n := len(series(t, reg, "mcpauth_events_total")); n != 9 {
		t.Fatalf("%d series, want 8 reasons and other", n)
	}
	if got := counter(t, reg, "mcpauth_events_total", "authentication", "failure", "", "other"); got != 993 {
		t.Fatalf("other = %v, want 993", got)
	}
}

func TestWatchDrops(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, err := New(&Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	block := make(chan struct{})
	a := mcpauth.NewAsyncSink(sinkFunc(func(context.Context, mcpauth.Event) { <-block }), 1)
	for range 10 {
		a.Record(context.Background(), mcpauth.Event{})
	}
	if err := s.WatchDrops(a); err != nil {
		t.Fatal(err)
	}
	if v := counter(t, reg, "mcpauth_events_dropped_total"); v < 8 {
		t.Fatalf("dropped = %v, want at least 8", v)
	}
	close(block)
	_ = a.Close()
	if _, err := New(&Options{Registerer: reg}); err == nil {
		t.Fatal("registering twice: no error")
	}
}

// TestRootDoesNotImportPrometheus checks the reason this package exists:
// importing mcpauth does not pull in the Prometheus client.
func TestRootDoesNotImportPrometheus(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, goTool, "list", "-deps", "github.com/mcpauth/mcpauth").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "prometheus") {
		t.Fatal("the root package depends on prometheus")
	}
}

type countSink struct{ n int }

func (c *countSink) Record(context.Context, mcpauth.Event) { c.n++ }

type sinkFunc func(context.Context, mcpauth.Event)

func (f sinkFunc) Record(ctx context.Context, e mcpauth.Event) { f(ctx, e) }
