package main

import (
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// TestOAuthMetrics: with -metrics, /metrics counts the events of the
// authorization server (its configuration, a failed client
// authentication) and of the MCP endpoint (a request without a token).
func TestOAuthMetrics(t *testing.T) {
	slog.SetDefault(slog.New(slog.DiscardHandler))
	s := startRun(t, []string{"-addr", "127.0.0.1:0", "-data", filepath.Join(t.TempDir(), "state.db"), "-metrics"}, nil)
	base := strings.TrimSuffix(s.url, "/mcp")
	resp, err := http.Post(s.url, "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = http.Post(base+"/token", "application/x-www-form-urlencoded", strings.NewReader("grant_type=client_credentials&client_id=nobody&client_secret=wrong-secret-of-a-guesser"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`mcpauth_events_total{kind="authentication",method="",outcome="failure",reason="no_credentials"} 1`,
		`mcpauth_events_total{kind="configuration",method="oauth",outcome="success",reason=""} 1`,
		`mcpauth_events_total{kind="token_issued",method="oauth",outcome="failure",reason="invalid_client"} 1`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics has no line %s:\n%s", want, b)
		}
	}
}
