package mcpauth_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpauth/mcpauth"
)

// authenticate runs v on a request with token as its bearer token.
func authenticate(v *mcpauth.OAuthVerifier, token string) (*mcpauth.Principal, error) {
	r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	return v.Authenticate(r)
}

// fakeJWT returns a token shaped like a JWT with the given claims, for an
// authorization server that introspects its JWTs too.
func fakeJWT(claims string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"ES256"}`)) + "." + enc([]byte(claims)) + "." + enc([]byte("sig"))
}

// TestOAuthIntrospection checks opaque tokens against the answers of the
// introspection endpoint: only an active token for this resource, of this
// issuer, that is an access token and not bound to a key, gets through.
func TestOAuthIntrospection(t *testing.T) {
	a := newFakeAS(t, "/tenant1")
	a.setMeta(map[string]any{"jwks_uri": nil}) // every token is introspected
	pr := newTestResource(t, testResource, a.issuer)
	v := newTestOAuthVerifier(t, a, pr, nil)
	now := time.Now()
	tests := []struct {
		name   string
		claims map[string]any // nil: a token the server does not know
		token  string         // instead of an opaque token for claims
		class  error          // nil: accepted
	}{
		{name: "active", claims: map[string]any{"jti": "jti-1"}},
		{name: "no iss", claims: map[string]any{"iss": nil, "jti": "jti-1"}},
		{name: "several audiences", claims: map[string]any{"aud": []string{"https://other.example.com", testResource + "/"}, "jti": "jti-1"}},
		{name: "token_type access_token", claims: map[string]any{"token_type": "access_token", "jti": "jti-1"}},
		{name: "unknown", class: mcpauth.ClassTokenInactive},
		{name: "inactive", claims: map[string]any{"active": false}, class: mcpauth.ClassTokenInactive},
		{name: "another resource", claims: map[string]any{"aud": "https://other.example.com/mcp"}, class: mcpauth.ClassTokenAudience},
		{name: "no aud", claims: map[string]any{"aud": nil}, class: mcpauth.ClassTokenAudience},
		{name: "aud not a string", claims: map[string]any{"aud": 7}, class: mcpauth.ClassTokenMalformed},
		{name: "another issuer", claims: map[string]any{"iss": "https://other.example.com"}, class: mcpauth.ClassTokenIssuer},
		{name: "iss not a string", claims: map[string]any{"iss": 1}, class: mcpauth.ClassTokenIssuer},
		{name: "expired", claims: map[string]any{"exp": now.Add(-time.Minute).Unix()}, class: mcpauth.ClassTokenExpired},
		{name: "exp not a number", claims: map[string]any{"exp": "tomorrow"}, class: mcpauth.ClassTokenMalformed},
		{name: "not yet valid", claims: map[string]any{"nbf": now.Add(time.Hour).Unix()}, class: mcpauth.ClassTokenNotYetValid},
		{name: "a refresh token", claims: map[string]any{"token_type": "refresh_token"}, class: mcpauth.ClassTokenType},
		{name: "a refresh token, by token_use", claims: map[string]any{"token_use": "refresh_token"}, class: mcpauth.ClassTokenType},
		{name: "bound to a certificate", claims: map[string]any{"cnf": map[string]any{"x5t#S256": "abc"}}, class: mcpauth.ClassTokenBound},
		{name: "no sub", claims: map[string]any{"sub": nil}, class: mcpauth.ClassTokenMalformed},
		{name: "a JWT of this issuer", token: fakeJWT(`{"iss":"` + a.issuer + `","sub":"alice"}`), claims: map[string]any{"jti": "jti-1"}},
		{name: "a JWT of another issuer", token: fakeJWT(`{"iss":"https://other.example.com","sub":"alice"}`), class: mcpauth.ErrNoCredentials},
	}
	h := mcpauth.Require(&mcpauth.RequireOptions{Resource: pr, Logger: quietLogger}, v)(principalHandler)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			token := tt.token
			if token == "" {
				token = "op_unknown_" + strings.ReplaceAll(tt.name, " ", "_")
			}
			if tt.claims != nil {
				a.mu.Lock()
				a.tokens[token] = a.activeClaims(now, tt.claims)
				a.mu.Unlock()
			}
			before := a.introspections.Load()
			p, err := authenticate(v, token)
			if tt.class == nil {
				if err != nil {
					t.Fatal(err)
				}
				if p.Method != mcpauth.MethodOAuth || p.Subject != "alice" || p.Issuer != a.issuer || p.ClientID != "client-1" ||
					!slices.Equal(p.Scopes, []string{"mcp:tools", "mcp:read"}) || !slices.Equal(p.Roles, []string{"admin"}) ||
					p.Expiry.Unix() != now.Add(time.Hour).Unix() || p.KeyID != "jti-1" {
					t.Errorf("principal %+v", p)
				}
			} else if !errors.Is(err, tt.class) {
				t.Fatalf("Authenticate: %v, want %v", err, tt.class)
			}
			w := serveToken(h, token)
			switch {
			case tt.class == nil && w.Code != 200, tt.class != nil && w.Code != 401:
				t.Errorf("through Require: status %d: %s", w.Code, w.Body)
			case tt.class != nil && !strings.Contains(w.Header().Get("WWW-Authenticate"), `error="invalid_token"`):
				t.Errorf("WWW-Authenticate %q", w.Header().Get("WWW-Authenticate"))
			}
			if strings.Contains(w.Body.String()+w.Header().Get("WWW-Authenticate"), token) {
				t.Error("the response contains the token")
			}
			// Two requests: the second answered from the cache, except for a
			// token that becomes valid by itself.
			want := int64(1)
			switch tt.class {
			case mcpauth.ErrNoCredentials:
				want = 0
			case mcpauth.ClassTokenNotYetValid:
				want = 2
			}
			if calls := a.introspections.Load() - before; calls != want {
				t.Errorf("%d introspections for two requests, want %d", calls, want)
			}
		})
	}
	// The introspection request: client_secret_basic, the token in the
	// form body, and nothing else of the request.
	for _, r := range a.seen() {
		if r.path != "/introspect" {
			continue
		}
		if !strings.HasPrefix(r.body, "token=") || !strings.HasSuffix(r.body, "&token_type_hint=access_token") {
			t.Errorf("introspection body %q", r.body)
		}
		if want := "Basic " + base64.StdEncoding.EncodeToString([]byte("mcp+server:s3cr%3At%26%2B%2F%C3%A9")); r.auth != want {
			t.Errorf("introspection Authorization %q, want %q", r.auth, want)
		}
	}
}

// TestOAuthIntrospectionClaims checks the principal built from an
// introspection answer: configured claim names, and a fingerprint for a
// token without a jti.
func TestOAuthIntrospectionClaims(t *testing.T) {
	a := newFakeAS(t, "")
	pr := newTestResource(t, testResource, a.issuer)
	v := newTestOAuthVerifier(t, a, pr, func(o *mcpauth.OAuthVerifierOptions) {
		o.RoleClaims = []string{"realm_access.roles"}
		o.ScopeClaims = []string{"scp"}
	})
	now := time.Now()
	token := a.opaque(a.activeClaims(now, map[string]any{"jti": nil, "realm_access": map[string]any{"roles": []string{"editor"}}, "scp": []string{"a", "b"}}))
	p, err := authenticate(v, token)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.Roles, []string{"editor"}) || !slices.Equal(p.Scopes, []string{"a", "b"}) {
		t.Errorf("roles %q, scopes %q", p.Roles, p.Scopes)
	}
	if !regexp.MustCompile(`^[0-9a-f]{12}$`).MatchString(p.KeyID) || strings.Contains(token, p.KeyID) {
		t.Errorf("KeyID %q, want a fingerprint", p.KeyID)
	}
}

// TestOAuthIntrospectionCache counts the calls to the introspection
// endpoint: answers are cached for CacheTTL, never past the token's exp,
// negative answers too, and not at all with the cache off.
func TestOAuthIntrospectionCache(t *testing.T) {
	a := newFakeAS(t, "")
	pr := newTestResource(t, testResource, a.issuer)
	clock := &testClock{now: time.Unix(1_800_000_000, 0)}
	v := newTestOAuthVerifier(t, a, pr, func(o *mcpauth.OAuthVerifierOptions) { o.Clock = clock.Now })
	h := mcpauth.Require(&mcpauth.RequireOptions{Resource: pr, Logger: quietLogger}, v)(principalHandler)
	long := a.opaque(a.activeClaims(clock.Now(), nil))
	short := a.opaque(a.activeClaims(clock.Now(), map[string]any{"exp": clock.Now().Add(10 * time.Second).Unix()}))
	unknown := "op_unknown"
	steps := []struct {
		advance time.Duration
		token   string
		status  int
		calls   int64 // introspections so far
	}{
		{0, long, 200, 1},
		{0, long, 200, 1},
		{0, short, 200, 2},
		{0, unknown, 401, 3},
		{0, unknown, 401, 3}, // the negative answer is cached
		{9 * time.Second, short, 200, 3},
		{0, long, 200, 3},
		{time.Second, short, 401, 4}, // at its exp: asked again, and refused as expired
		{0, short, 401, 4},           // that refusal is cached
		{19 * time.Second, long, 200, 4},
		{time.Second, long, 200, 5}, // CacheTTL (30 s) has passed
		{0, unknown, 401, 6},
	}
	for i, s := range steps {
		clock.advance(s.advance)
		w := serveToken(h, s.token)
		if w.Code != s.status || a.introspections.Load() != s.calls {
			t.Fatalf("step %d: status %d, %d introspections; want %d, %d", i, w.Code, a.introspections.Load(), s.status, s.calls)
		}
	}

	off := newTestOAuthVerifier(t, a, pr, func(o *mcpauth.OAuthVerifierOptions) { o.Clock = clock.Now; o.CacheTTL = -1 })
	before := a.introspections.Load()
	for range 3 {
		if _, err := authenticate(off, long); err != nil {
			t.Fatal(err)
		}
	}
	if n := a.introspections.Load() - before; n != 3 {
		t.Errorf("cache off: %d introspections for 3 requests", n)
	}
}

// TestOAuthIntrospectionCacheBounded fills a small cache with many tokens,
// good and bad: it never holds more than CacheSize of each.
func TestOAuthIntrospectionCacheBounded(t *testing.T) {
	a := newFakeAS(t, "")
	pr := newTestResource(t, testResource, a.issuer)
	v := newTestOAuthVerifier(t, a, pr, func(o *mcpauth.OAuthVerifierOptions) { o.CacheSize = 16 })
	now := time.Now()
	for i := range 100 {
		if _, err := authenticate(v, a.opaque(a.activeClaims(now, nil))); err != nil {
			t.Fatal(err)
		}
		if _, err := authenticate(v, fmt.Sprintf("op_unknown_%d", i)); !errors.Is(err, mcpauth.ClassTokenInactive) {
			t.Fatal(err)
		}
	}
	if n := mcpauth.OAuthCacheLen(v); n > 32 || n < 16 {
		t.Errorf("the caches hold %d answers, want 16 to 32", n)
	}
}

// TestOAuthIntrospectionConcurrent checks that concurrent requests with one
// uncached token cause one introspection.
func TestOAuthIntrospectionConcurrent(t *testing.T) {
	a := newFakeAS(t, "")
	a.gate = make(chan struct{})
	// Registered after the server's Close, so run before it: a failing test
	// must not leave handlers blocked.
	release := sync.OnceFunc(func() { close(a.gate) })
	t.Cleanup(release)
	pr := newTestResource(t, testResource, a.issuer)
	v := newTestOAuthVerifier(t, a, pr, nil)
	token := a.opaque(a.activeClaims(time.Now(), nil))
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := authenticate(v, token)
			errs <- err
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for mcpauth.OAuthWaiting(v) < n-1 || a.introspections.Load() < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d waiting, %d introspections", mcpauth.OAuthWaiting(v), a.introspections.Load())
		}
		time.Sleep(time.Millisecond)
	}
	release()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if c := a.introspections.Load(); c != 1 {
		t.Errorf("%d introspections, want 1", c)
	}
}

// TestOAuthIntrospectionDown checks that an introspection endpoint that
// fails, refuses this server, redirects or answers nonsense makes requests
// fail with 503, never pass, and that the token goes nowhere else.
func TestOAuthIntrospectionDown(t *testing.T) {
	elsewhere := newFakeAS(t, "") // a redirect's target
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	tests := []struct {
		name  string
		setup func(a *fakeAS, o *mcpauth.OAuthVerifierOptions)
	}{
		{"server error", func(a *fakeAS, _ *mcpauth.OAuthVerifierOptions) { a.introspectStatus.Store(500) }},
		{"unreachable", func(a *fakeAS, _ *mcpauth.OAuthVerifierOptions) {
			a.setMeta(map[string]any{"introspection_endpoint": closed.URL + "/introspect"})
		}},
		{"wrong client secret", func(_ *fakeAS, o *mcpauth.OAuthVerifierOptions) { o.ClientSecret = "wrong" }},
		{"redirect", func(a *fakeAS, _ *mcpauth.OAuthVerifierOptions) {
			a.setMeta(map[string]any{"introspection_endpoint": a.srv.URL + "/moved"})
			mux := http.NewServeMux()
			mux.Handle("/moved", http.RedirectHandler(elsewhere.srv.URL+"/introspect", http.StatusTemporaryRedirect))
			mux.HandleFunc("/", a.serve)
			a.srv.Config.Handler = mux
		}},
		{"not JSON", func(a *fakeAS, _ *mcpauth.OAuthVerifierOptions) { s := "<html>"; a.introspectBody.Store(&s) }},
		{"no active member", func(a *fakeAS, _ *mcpauth.OAuthVerifierOptions) { s := `{"sub":"alice"}`; a.introspectBody.Store(&s) }},
		{"active not a boolean", func(a *fakeAS, _ *mcpauth.OAuthVerifierOptions) { s := `{"active":"true"}`; a.introspectBody.Store(&s) }},
		{"duplicate members", func(a *fakeAS, _ *mcpauth.OAuthVerifierOptions) {
			s := `{"active":false,"active":true,"sub":"alice","aud":"` + testResource + `"}`
			a.introspectBody.Store(&s)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newFakeAS(t, "")
			pr := newTestResource(t, testResource, a.issuer)
			events := &eventLog{}
			opts := mcpauth.OAuthVerifierOptions{Issuer: a.issuer, Resource: pr, ClientID: testClientID, ClientSecret: testClientSecret, Events: events, Logger: quietLogger}
			tt.setup(a, &opts)
			v := newTestOAuthVerifier(t, a, pr, func(o *mcpauth.OAuthVerifierOptions) { *o = opts })
			token := a.opaque(a.activeClaims(time.Now(), nil))
			h := mcpauth.Require(&mcpauth.RequireOptions{Resource: pr, Events: events}, v)(principalHandler)
			for range 2 { // the failure is not cached
				w := serveToken(h, token)
				if w.Code != http.StatusServiceUnavailable {
					t.Fatalf("status %d, want 503: %s", w.Code, w.Body)
				}
				var body struct{ Error string }
				if json.Unmarshal(w.Body.Bytes(), &body) != nil || body.Error != "temporarily_unavailable" {
					t.Errorf("body %s", w.Body)
				}
			}
			if _, err := authenticate(v, token); !errors.Is(err, mcpauth.ErrUnavailable) {
				t.Errorf("Authenticate: %v, want ErrUnavailable", err)
			}
			var keySource, failures int
			for _, e := range events.all() {
				if strings.Contains(fmt.Sprintf("%+v", e), token) {
					t.Errorf("event %+v contains the token", e)
				}
				switch {
				case e.Kind == mcpauth.EventKeySource:
					keySource++
				case e.Kind == mcpauth.EventAuthentication && e.Outcome == mcpauth.OutcomeFailure && e.Reason == "introspection_unavailable":
					failures++
				}
			}
			if keySource != 1 || failures != 2 {
				t.Errorf("%d key-source events (want 1), %d failed authentications (want 2)", keySource, failures)
			}
			for _, r := range elsewhere.seen() {
				t.Errorf("the token went elsewhere: %+v", r)
			}
		})
	}
}
