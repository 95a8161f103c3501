package mcpauth

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/mcpauth/mcpauth/internal/benchcmp"
	"github.com/modelcontextprotocol/go-sdk/auth"
)

// BenchmarkBridgeRatio measures what Require costs apart from verifying a
// credential: an authenticator that returns a principal built once (as
// APIKeys and the JWT cache do), so that what is left is putting the
// principal on the context and handing it to go-sdk. The baseline is go-sdk's
// RequireBearerToken with a verifier that does nothing.
func BenchmarkBridgeRatio(b *testing.B) {
	p := (&Principal{Subject: "user", Method: MethodAPIKey}).seal()
	fixed := AuthenticatorFunc(func(*http.Request) (*Principal, error) { return p, nil })
	var sink int
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sink += len(auth.TokenInfoFromContext(r.Context()).UserID)
	})
	info := &auth.TokenInfo{UserID: "apikey:user", Expiration: time.Now().Add(time.Hour)}
	noop := auth.RequireBearerToken(func(context.Context, string, *http.Request) (*auth.TokenInfo, error) { return info, nil }, nil)(next)
	ours := Require(&RequireOptions{Logger: slog.New(slog.DiscardHandler)}, fixed)(next)
	r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	r.Header.Set("Authorization", "Bearer abc")
	w := benchcmp.NewDiscardWriter()
	b.ReportAllocs()
	benchcmp.Interleave(b, 200, func() { ours.ServeHTTP(w, r) }, func() { noop.ServeHTTP(w, r) })
}

// BenchmarkAuditRatio measures what the default audit costs on the success
// path: Require with API keys and the default log sink writing JSON at Info
// (to io.Discard), against the same with a logger that discards everything,
// interleaved in one run.
func BenchmarkAuditRatio(b *testing.B) {
	key, _ := GenerateAPIKey()
	keys, _ := NewAPIKeys(APIKey{Key: key, Subject: "user"})
	next := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	audited := Require(&RequireOptions{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))}, keys)(next)
	quiet := Require(&RequireOptions{Logger: slog.New(slog.DiscardHandler)}, keys)(next)
	r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	r.Header.Set("Authorization", "Bearer "+key)
	w := benchcmp.NewDiscardWriter()
	b.ReportAllocs()
	benchcmp.Interleave(b, 200, func() { audited.ServeHTTP(w, r) }, func() { quiet.ServeHTTP(w, r) })
}
