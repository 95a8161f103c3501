package main

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

// TestQuickstartMetrics: with -metrics, /metrics counts the security
// events; without it, there is no /metrics.
func TestQuickstartMetrics(t *testing.T) {
	slog.SetDefault(slog.New(slog.DiscardHandler))
	get := func(url, key string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if key != "" {
			req.Header.Set("X-API-Key", key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	s := startRun(t, []string{"-addr", "127.0.0.1:0", "-metrics"}, nil)
	metrics := strings.TrimSuffix(s.url, "/mcp") + "/metrics"
	if code, _ := get(s.url, "mcpk_not-a-real-key"); code != http.StatusUnauthorized {
		t.Fatalf("a wrong key: %d, want 401", code)
	}
	code, body := get(metrics, "")
	want := `mcpauth_events_total{kind="authentication",method="apikey",outcome="failure",reason="malformed"} 1`
	if code != http.StatusOK || !strings.Contains(body, want) {
		t.Fatalf("/metrics: %d, want a line %s in:\n%s", code, want, body)
	}
	plain := startRun(t, []string{"-addr", "127.0.0.1:0"}, nil)
	if code, _ := get(strings.TrimSuffix(plain.url, "/mcp")+"/metrics", ""); code != http.StatusNotFound {
		t.Fatalf("/metrics without -metrics: %d, want 404", code)
	}
}
