package mcpauth_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/mcpauth/mcpauth"
	"github.com/mcpauth/mcpauth/internal/benchcmp"
)

// BenchmarkOAuthRatio measures the resource side's check of an access token
// through Require (an OAuthVerifier, with a ProtectedResource for the
// challenges) against the plain JWTVerifier path through Require with the
// same issuer, JWKS and audience, interleaved in one run (see docs/oauth.md
// for the figures):
//
//   - first-seen: 256 distinct JWTs in turn through 16-entry caches, so
//     that every one misses, has its signature checked, and is inserted;
//   - cached: one JWT, a cache hit on both sides;
//   - introspection-cached: an opaque token answered from the
//     introspection cache, against the JWT cache hit.
func BenchmarkOAuthRatio(b *testing.B) {
	a := newFakeAS(b, "")
	pr := newTestResource(b, testResource, a.issuer)
	quiet := &mcpauth.RequireOptions{Logger: quietLogger}
	next := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	baseline := func(cacheSize int) http.Handler {
		v, err := mcpauth.NewJWTVerifier(mcpauth.JWTVerifierOptions{CacheSize: cacheSize, Issuers: []mcpauth.TrustedIssuer{{
			Issuer: a.issuer, Method: mcpauth.MethodOAuth, JWKSURL: a.srv.URL + "/jwks", Audiences: []string{testResource},
		}}})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { v.Close() })
		return mcpauth.Require(quiet, v)(next)
	}
	ours := func(cacheSize int) http.Handler {
		v := newTestOAuthVerifier(b, a, pr, func(o *mcpauth.OAuthVerifierOptions) { o.CacheSize = cacheSize })
		return mcpauth.Require(&mcpauth.RequireOptions{Resource: pr, Logger: quietLogger}, v)(next)
	}
	request := func(token string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
		r.Header.Set("Authorization", "Bearer "+token)
		return r
	}
	w := benchcmp.NewDiscardWriter()
	serve := func(h http.Handler, r *http.Request) func() {
		return func() {
			w.Reset()
			h.ServeHTTP(w, r)
		}
	}
	// Each handler must accept its token: a benchmark of refusals would
	// measure nothing of interest.
	check := func(h http.Handler, token string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, request(token))
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}

	b.Run("first-seen", func(b *testing.B) {
		pool := make([]*http.Request, 256)
		for i := range pool {
			pool[i] = request(a.mint(testResource))
		}
		o, base := ours(16), baseline(16)
		check(o, a.mint(testResource))
		check(base, a.mint(testResource))
		i, j := 0, 0
		b.ReportAllocs()
		benchcmp.Interleave(b, 10, func() {
			i = (i + 1) % len(pool)
			serve(o, pool[i])()
		}, func() {
			j = (j + 1) % len(pool)
			serve(base, pool[j])()
		})
	})
	token := a.mint(testResource)
	o, base := ours(0), baseline(0)
	check(o, token)
	check(base, token)
	b.Run("cached", func(b *testing.B) {
		b.ReportAllocs()
		benchcmp.Interleave(b, 200, serve(o, request(token)), serve(base, request(token)))
	})
	b.Run("introspection-cached", func(b *testing.B) {
		opaque := a.opaque(a.activeClaims(time.Now(), nil))
		check(o, opaque)
		b.ReportAllocs()
		benchcmp.Interleave(b, 200, serve(o, request(opaque)), serve(base, request(token)))
	})
}
