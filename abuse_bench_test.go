package mcpauth

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpauth/mcpauth/internal/benchcmp"
)

// BenchmarkAbuseControlsRatio measures what lockout and a per-principal
// rate limit cost on the success path (an API key), against the same
// Require with both off, interleaved in one run. "lockout" is the default
// (lockout on, no rate limit) with nothing locked out anywhere, the common
// case; "lockout+ratelimit" adds a rate limit; "...-locked" has other
// addresses locked out, so that every request looks its address up.
func BenchmarkAbuseControlsRatio(b *testing.B) {
	for _, tc := range []struct {
		name         string
		rate, locked bool
	}{
		{"lockout", false, false},
		{"lockout-locked", false, true},
		{"lockout+ratelimit", true, false},
		{"lockout+ratelimit-locked", true, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			key, _ := GenerateAPIKey()
			keys, _ := NewAPIKeys(APIKey{Key: key, Subject: "user"})
			next := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
			quiet := slog.New(slog.DiscardHandler)
			lo, _ := NewLockout(&LockoutOptions{Events: LogEvents(quiet)})
			if tc.locked {
				for i := range 100 {
					for range defaultSourceFailures {
						lo.fail(context.Background(), "10.9.0."+strconv.Itoa(i), "", "")
					}
				}
			}
			opts := &RequireOptions{Logger: quiet, Lockout: lo}
			if tc.rate {
				opts.RateLimit = Limit{Rate: 1e9, Burst: 1 << 30}
			}
			off, _ := NewLockout(&LockoutOptions{SourceFailures: -1, CredentialFailures: -1})
			on := Require(opts, keys)(next)
			base := Require(&RequireOptions{Logger: quiet, Lockout: off}, keys)(next)
			r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
			r.Header.Set("Authorization", "Bearer "+key)
			w := benchcmp.NewDiscardWriter()
			b.ReportAllocs()
			benchcmp.Interleave(b, 200, func() { w.Reset(); on.ServeHTTP(w, r) }, func() { w.Reset(); base.ServeHTTP(w, r) })
		})
	}
}

// BenchmarkLockoutDistinctSources fails once from each of n distinct
// addresses (a flood from a botnet or an IPv6 range) and reports the heap
// the Lockout holds afterwards: flat at its bound (the default 100,000
// entries) from 100,000 addresses to a million.
func BenchmarkLockoutDistinctSources(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			var heap, entries float64
			for b.Loop() {
				runtime.GC()
				var before runtime.MemStats
				runtime.ReadMemStats(&before)
				lo, _ := NewLockout(&LockoutOptions{Events: LogEvents(slog.New(slog.DiscardHandler))})
				for i := range n {
					lo.fail(context.Background(), "2001:db8:"+strconv.Itoa(i>>16)+":"+strconv.Itoa(i&0xffff)+"::/64", "", "")
				}
				runtime.GC()
				var after runtime.MemStats
				runtime.ReadMemStats(&after)
				heap = float64(after.HeapAlloc) - float64(before.HeapAlloc)
				entries = float64(lo.size.Load())
				runtime.KeepAlive(lo)
			}
			b.ReportMetric(heap/(1<<20), "heap-MB")
			b.ReportMetric(entries, "entries")
		})
	}
}

// BenchmarkAbuseControlsMCPRatio is BenchmarkAbuseControlsRatio on the
// whole success path of an MCP request: a tools/call through go-sdk's
// stateless Streamable HTTP handler behind Require.
func BenchmarkAbuseControlsMCPRatio(b *testing.B) {
	key, _ := GenerateAPIKey()
	keys, _ := NewAPIKeys(APIKey{Key: key, Subject: "user"})
	server := mcp.NewServer(&mcp.Implementation{Name: "bench", Version: "1"}, nil)
	mcp.AddTool(server, &mcp.Tool{Name: "echo"}, func(_ context.Context, _ *mcp.CallToolRequest, in struct{ S string }) (*mcp.CallToolResult, struct{ S string }, error) {
		return nil, in, nil
	})
	next := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, &mcp.StreamableHTTPOptions{Stateless: true, JSONResponse: true})
	quiet := slog.New(slog.DiscardHandler)
	lo, _ := NewLockout(&LockoutOptions{Events: LogEvents(quiet)})
	off, _ := NewLockout(&LockoutOptions{SourceFailures: -1, CredentialFailures: -1})
	on := Require(&RequireOptions{Logger: quiet, Lockout: lo, RateLimit: Limit{Rate: 1e9, Burst: 1 << 30}}, keys)(next)
	base := Require(&RequireOptions{Logger: quiet, Lockout: off}, keys)(next)
	const body = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"S":"hi"}}}`
	serve := func(h http.Handler) func() {
		return func() {
			r := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(body))
			r.Header.Set("Authorization", "Bearer "+key)
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("Accept", "application/json, text/event-stream")
			r.Header.Set("Mcp-Protocol-Version", "2025-11-25")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != http.StatusOK {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
	}
	b.ReportAllocs()
	benchcmp.Interleave(b, 50, serve(on), serve(base))
}
