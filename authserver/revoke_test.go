package authserver

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/mcpauth/mcpauth"
)

func TestRevokeAccessToken(t *testing.T) {
	env := newEnv(t, nil)
	m := env.tokensFor("")
	access, refresh := m["access_token"].(string), m["refresh_token"].(string)
	v, _ := env.as.Verifier()

	// The resource side: Require with the server's verifier.
	protected := mcpauth.Require(&mcpauth.RequireOptions{Events: discardEvents{}}, v)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	call := func() int {
		req := httptest.NewRequest("GET", "/mcp", nil)
		req.Header.Set("Authorization", "Bearer "+access)
		rec := httptest.NewRecorder()
		protected.ServeHTTP(rec, req)
		return rec.Code
	}
	if code := call(); code != 200 {
		t.Fatalf("before revocation: %d", code)
	}
	// Another client cannot revoke it (and is told nothing).
	resp, _ := env.post("/revoke", url.Values{"token": {access}}, basicAuth("machine", testSecret))
	if resp.StatusCode != 200 || call() != 200 {
		t.Fatalf("another client's revocation: %d, token now %d", resp.StatusCode, call())
	}
	resp, _ = env.post("/revoke", url.Values{"token": {access}, "token_type_hint": {"access_token"}, "client_id": {"app"}}, nil)
	if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("revoke: %d", resp.StatusCode)
	}
	if code := call(); code != 401 {
		t.Errorf("after revocation: %d", code)
	}
	// A verifier in another process sharing the store sees it too: the
	// root's JWTVerifier with the JWKS URL and the same Store.
	ext, err := mcpauth.NewJWTVerifier(mcpauth.JWTVerifierOptions{
		Issuers: []mcpauth.TrustedIssuer{{Issuer: env.as.Issuer(), Audiences: []string{env.resource()}, JWKSURL: env.url("/jwks.json"), Method: mcpauth.MethodOAuth}},
		Store:   env.store,
		Clock:   env.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ext.Close()
	if _, err := ext.Verify(context.Background(), access); !errors.Is(err, mcpauth.ErrRevoked) {
		t.Errorf("external verifier: %v", err)
	}
	if _, err := ext.Verify(context.Background(), env.ccToken("")); err != nil {
		t.Errorf("external verifier, good token: %v", err)
	}
	// The refresh token is untouched by revoking the access token.
	if status, _ := env.refreshWith(refresh); status != 200 {
		t.Errorf("refresh after revoking the access token: %d", status)
	}
}

func TestRevokeRefreshTokenRevokesFamily(t *testing.T) {
	env := newEnv(t, nil)
	m := env.tokensFor("")
	_, m2 := env.refreshWith(m["refresh_token"].(string))
	rotated, live := m["refresh_token"].(string), m2["refresh_token"].(string)
	// Revoking the rotated token revokes the family, live token included.
	resp, _ := env.post("/revoke", url.Values{"token": {rotated}, "client_id": {"app"}}, nil)
	if resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode)
	}
	if status, _ := env.refreshWith(live); status != 400 {
		t.Errorf("live token after revoking the family: %d", status)
	}
	v, _ := env.as.Verifier()
	for _, at := range []string{m["access_token"].(string), m2["access_token"].(string)} {
		if _, err := v.Verify(context.Background(), at); !errors.Is(err, mcpauth.ErrRevoked) {
			t.Errorf("access token of the family: %v", err)
		}
	}
	// And the live one directly.
	m = env.tokensFor("")
	if resp, _ := env.post("/revoke", url.Values{"token": {m["refresh_token"].(string)}, "client_id": {"app"}}, nil); resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode)
	}
	if status, _ := env.refreshWith(m["refresh_token"].(string)); status != 400 {
		t.Errorf("revoked refresh token: %d", status)
	}
	if len(env.events.find(EventTokenRevoked, mcpauth.OutcomeSuccess)) < 2 {
		t.Error("no revocation events")
	}
}

func TestRevokeErrorsAndUnknownTokens(t *testing.T) {
	env := newEnv(t, nil)
	env.ccToken("")
	m := env.tokensFor("")
	before := snapshot(t, env.store)
	for _, tt := range []struct {
		name   string
		form   url.Values
		header http.Header
		status int
		code   string
	}{
		{"unknown token", url.Values{"token": {"nothing"}, "client_id": {"app"}}, nil, 200, ""},
		{"forged jwt", url.Values{"token": {"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"}, "client_id": {"app"}}, nil, 200, ""},
		{"another client's refresh token", url.Values{"token": {m["refresh_token"].(string)}}, basicAuth("machine", testSecret), 200, ""},
		{"unknown hint", url.Values{"token": {"nothing"}, "token_type_hint": {"weird"}, "client_id": {"app"}}, nil, 200, ""},
		{"no token", url.Values{"client_id": {"app"}}, nil, 400, "invalid_request"},
		{"wrong secret", url.Values{"token": {"x"}}, basicAuth("machine", "wrong"), 401, "invalid_client"},
		{"no client", url.Values{"token": {"x"}}, nil, 401, "invalid_client"},
		{"duplicate token", url.Values{"token": {"x", "y"}, "client_id": {"app"}}, nil, 400, "invalid_request"},
	} {
		resp, body := env.post("/revoke", tt.form, tt.header)
		if resp.StatusCode != tt.status || (tt.code != "" && body["error"] != tt.code) {
			t.Errorf("%s: %d %v", tt.name, resp.StatusCode, body)
		}
	}
	if d := diff(before, snapshot(t, env.store)); len(d) > 0 {
		t.Errorf("store changed: %v", d)
	}
	if status, _ := env.refreshWith(m["refresh_token"].(string)); status != 200 {
		t.Errorf("app's token after another client tried to revoke it: %d", status)
	}
}

func TestIntrospection(t *testing.T) {
	env := newEnv(t, nil)
	cc := env.ccToken("tools:write")
	m := env.tokensFor("tools:read")
	access, refresh := m["access_token"].(string), m["refresh_token"].(string)
	introspect := func(token string, header http.Header) (int, map[string]any) {
		resp, body := env.post("/introspect", url.Values{"token": {token}}, header)
		if resp.StatusCode == 200 && resp.Header.Get("Cache-Control") != "no-store" {
			t.Error("introspection response may be cached")
		}
		return resp.StatusCode, body
	}
	machine, auditor := basicAuth("machine", testSecret), basicAuth("auditor", otherSecret)

	status, r := introspect(cc, machine)
	if status != 200 || r["active"] != true || r["sub"] != "machine" || r["client_id"] != "machine" || r["scope"] != "tools:write" ||
		r["iss"] != env.as.Issuer() || r["aud"] != env.resource() || r["jti"] == nil || r["exp"] == nil || r["token_type"] != "Bearer" {
		t.Errorf("own token: %d %v", status, r)
	}
	if _, r := introspect(access, machine); r["active"] != false || len(r) != 1 {
		t.Errorf("another client's token: %v", r)
	}
	if _, r := introspect(access, auditor); r["active"] != true || r["sub"] != "alice" || r["roles"] == nil {
		t.Errorf("auditor: %v", r)
	}
	if _, r := introspect(refresh, auditor); r["active"] != true || r["token_type"] != "refresh_token" || r["sub"] != "alice" {
		t.Errorf("refresh token: %v", r)
	}
	for _, tok := range []string{"garbage", "a.b.c", refresh + "x"} {
		if _, r := introspect(tok, auditor); r["active"] != false {
			t.Errorf("%q: %v", tok, r)
		}
	}
	// Public clients cannot introspect.
	resp, body := env.post("/introspect", url.Values{"token": {access}, "client_id": {"app"}}, nil)
	if resp.StatusCode != 401 || body["error"] != "invalid_client" {
		t.Errorf("public client: %d %v", resp.StatusCode, body)
	}
	if status, _ := introspect(access, basicAuth("auditor", "wrong")); status != 401 {
		t.Errorf("wrong secret: %d", status)
	}
	// Revoked and expired tokens are inactive.
	env.post("/revoke", url.Values{"token": {refresh}, "client_id": {"app"}}, nil)
	if _, r := introspect(refresh, auditor); r["active"] != false {
		t.Errorf("revoked refresh token: %v", r)
	}
	if _, r := introspect(access, auditor); r["active"] != false {
		t.Errorf("access token of a revoked family: %v", r)
	}
	env.clock.Advance(DefaultAccessTokenTTL + time.Second)
	if _, r := introspect(cc, machine); r["active"] != false {
		t.Errorf("expired token: %v", r)
	}
}
