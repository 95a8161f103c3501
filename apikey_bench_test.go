package mcpauth_test

import (
	"context"
	"crypto/subtle"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/mcpauth/mcpauth"
	"github.com/mcpauth/mcpauth/internal/benchcmp"
	"github.com/modelcontextprotocol/go-sdk/auth"
)

var sink int

// next is the protected handler: it only touches the principal, so that
// the work of reading it is counted.
var next = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if ti := auth.TokenInfoFromContext(r.Context()); ti != nil {
		sink += len(ti.UserID)
	}
})

func benchKeys(b *testing.B, n int) (keys []mcpauth.APIKey, presented string) {
	b.Helper()
	for i := range n {
		k, err := mcpauth.GenerateAPIKey()
		if err != nil {
			b.Fatal(err)
		}
		keys = append(keys, mcpauth.APIKey{Key: k, Subject: "user" + strconv.Itoa(i)})
	}
	// The tutorial's loop stops at the first match: present the key in the
	// middle, its average case.
	return keys, keys[n/2].Key
}

func serve(b *testing.B, h http.Handler, r *http.Request, wantStatus bool) {
	b.Helper()
	w := benchcmp.NewDiscardWriter()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w.Reset()
		h.ServeHTTP(w, r)
	}
}

func request(header, value string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	r.Header.Set(header, value)
	return r
}

// tutorialAPIKeyAuth is the tutorial's middleware in Go: a timing-safe
// comparison against every configured key until one matches.
func tutorialAPIKeyAuth(keys []string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get("X-API-Key")
		if key == "" {
			http.Error(w, `{"error":"Missing API key"}`, http.StatusUnauthorized)
			return
		}
		for _, k := range keys {
			if subtle.ConstantTimeCompare([]byte(key), []byte(k)) == 1 {
				next.ServeHTTP(w, r)
				return
			}
		}
		http.Error(w, `{"error":"Invalid API key"}`, http.StatusForbidden)
	})
}

var quietLog = quiet

// BenchmarkAPIKeySuccess measures an accepted request through the whole
// middleware (authentication, audit decision, go-sdk bridge), beside the
// tutorial's loop and beside go-sdk's RequireBearerToken with a verifier that
// does nothing.
func BenchmarkAPIKeySuccess(b *testing.B) {
	for _, n := range []int{1, 10000} {
		keys, presented := benchKeys(b, n)
		ours, err := mcpauth.NewAPIKeys(keys...)
		if err != nil {
			b.Fatal(err)
		}
		plain := make([]string, len(keys))
		for i, k := range keys {
			plain[i] = k.Key
		}
		suffix := "/keys=" + strconv.Itoa(n)
		b.Run("mcpauth-bearer"+suffix, func(b *testing.B) {
			serve(b, mcpauth.Require(quietLog, ours)(next), request("Authorization", "Bearer "+presented), true)
		})
		b.Run("mcpauth-x-api-key"+suffix, func(b *testing.B) {
			serve(b, mcpauth.Require(quietLog, ours)(next), request("X-API-Key", presented), true)
		})
		b.Run("tutorial-loop"+suffix, func(b *testing.B) {
			serve(b, tutorialAPIKeyAuth(plain, next), request("X-API-Key", presented), true)
		})
	}
	b.Run("go-sdk-RequireBearerToken-noop", func(b *testing.B) {
		info := &auth.TokenInfo{UserID: "apikey:user", Expiration: time.Now().Add(time.Hour)}
		noop := func(context.Context, string, *http.Request) (*auth.TokenInfo, error) { return info, nil }
		key, _ := mcpauth.GenerateAPIKey()
		serve(b, auth.RequireBearerToken(noop, nil)(next), request("Authorization", "Bearer "+key), true)
	})
	b.Run("mcpauth-bearer-audited/keys=1", func(b *testing.B) {
		keys, presented := benchKeys(b, 1)
		ours, _ := mcpauth.NewAPIKeys(keys...)
		opts := &mcpauth.RequireOptions{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))}
		serve(b, mcpauth.Require(opts, ours)(next), request("Authorization", "Bearer "+presented), true)
	})
}

// BenchmarkAPIKeyRefused measures the 401 path: an unknown key, a key with a
// bad checksum, and no credentials, beside the tutorial's refusal.
func BenchmarkAPIKeyRefused(b *testing.B) {
	keys, _ := benchKeys(b, 1)
	ours, _ := mcpauth.NewAPIKeys(keys...)
	unknown, _ := mcpauth.GenerateAPIKey()
	h := mcpauth.Require(quietLog, ours)(next)
	b.Run("mcpauth-unknown-key", func(b *testing.B) { serve(b, h, request("X-API-Key", unknown), false) })
	b.Run("mcpauth-bad-checksum", func(b *testing.B) { serve(b, h, request("X-API-Key", unknown[:len(unknown)-1]+"!"), false) })
	b.Run("mcpauth-no-credentials", func(b *testing.B) { serve(b, h, request("X-Other", "x"), false) })
	b.Run("mcpauth-unknown-key-audited", func(b *testing.B) {
		opts := &mcpauth.RequireOptions{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))}
		serve(b, mcpauth.Require(opts, ours)(next), request("X-API-Key", unknown), false)
	})
	b.Run("tutorial-loop-unknown-key", func(b *testing.B) {
		serve(b, tutorialAPIKeyAuth([]string{keys[0].Key}, next), request("X-API-Key", unknown), false)
	})
}

// compare interleaves two handlers (see benchcmp.Interleave).
func compare(b *testing.B, ours http.Handler, rOurs *http.Request, base http.Handler, rBase *http.Request) {
	b.Helper()
	w := benchcmp.NewDiscardWriter()
	b.ReportAllocs()
	benchcmp.Interleave(b, 200,
		func() { w.Reset(); ours.ServeHTTP(w, rOurs) },
		func() { w.Reset(); base.ServeHTTP(w, rBase) })
}

// BenchmarkAPIKeyRatio states the targets as ratios measured in one
// interleaved run: 10,000 keys against 1 key, and the whole success path
// against go-sdk's RequireBearerToken with a verifier that does nothing.
func BenchmarkAPIKeyRatio(b *testing.B) {
	keys1, key1 := benchKeys(b, 1)
	keysN, keyN := benchKeys(b, 10000)
	one, _ := mcpauth.NewAPIKeys(keys1...)
	many, _ := mcpauth.NewAPIKeys(keysN...)
	info := &auth.TokenInfo{UserID: "apikey:user", Expiration: time.Now().Add(time.Hour)}
	noop := auth.RequireBearerToken(func(context.Context, string, *http.Request) (*auth.TokenInfo, error) { return info, nil }, nil)(next)

	b.Run("10000-keys-vs-1-key", func(b *testing.B) {
		compare(b, mcpauth.Require(quietLog, many)(next), request("Authorization", "Bearer "+keyN),
			mcpauth.Require(quietLog, one)(next), request("Authorization", "Bearer "+key1))
	})
	b.Run("bearer-vs-go-sdk-noop", func(b *testing.B) {
		compare(b, mcpauth.Require(quietLog, one)(next), request("Authorization", "Bearer "+key1),
			noop, request("Authorization", "Bearer "+key1))
	})
	b.Run("x-api-key-vs-go-sdk-noop", func(b *testing.B) {
		compare(b, mcpauth.Require(quietLog, one)(next), request("X-API-Key", key1),
			noop, request("Authorization", "Bearer "+key1))
	})
	b.Run("10000-keys-vs-tutorial-loop", func(b *testing.B) {
		plain := make([]string, len(keysN))
		for i, k := range keysN {
			plain[i] = k.Key
		}
		compare(b, mcpauth.Require(quietLog, many)(next), request("X-API-Key", keyN),
			tutorialAPIKeyAuth(plain, next), request("X-API-Key", keyN))
	})
}
