package main

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMTLSMetrics: with -metrics the example counts the authentications it
// decides and serves the counts at /metrics, to a scraper that presents no
// client certificate; without it there is no /metrics.
func TestMTLSMetrics(t *testing.T) {
	slog.SetDefault(slog.New(slog.DiscardHandler))
	dir := filepath.Join(t.TempDir(), "certs")
	s := startRun(t, []string{"-addr", "127.0.0.1:0", "-certs", dir, "-metrics"})
	caPEM, err := os.ReadFile(filepath.Join(dir, fileCA))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := c.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// The start-up check made one request with the certificate and one
	// without; this is one more without.
	if code, _ := get(s.url); code != http.StatusUnauthorized {
		t.Fatalf("/mcp without a certificate: %d, want 401", code)
	}
	code, body := get(strings.TrimSuffix(s.url, "/mcp") + "/metrics")
	want := `mcpauth_events_total{kind="authentication",method="mtls",outcome="success",reason=""} 1`
	if code != http.StatusOK || !strings.Contains(body, want) {
		t.Fatalf("/metrics: %d, want a line %s in:\n%s", code, want, body)
	}
	plain := startRun(t, []string{"-addr", "127.0.0.1:0", "-certs", dir})
	if code, _ := get(strings.TrimSuffix(plain.url, "/mcp") + "/metrics"); code != http.StatusNotFound {
		t.Fatalf("/metrics without -metrics: %d, want 404", code)
	}
}
