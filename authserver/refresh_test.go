package authserver

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpauth/mcpauth"
	"github.com/mcpauth/mcpauth/internal/mcptest"
	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
	"golang.org/x/oauth2"
)

// tokensFor runs the code flow for app with the given scope and returns
// the token response.
func (env *testEnv) tokensFor(scope string) map[string]any {
	env.t.Helper()
	verifier := oauth2.GenerateVerifier()
	q := env.authorizeQuery()
	q.Set("code_challenge", oauth2.S256ChallengeFromVerifier(verifier))
	if scope != "" {
		q.Set("scope", scope)
	}
	back := env.authorize(env.url("/authorize?"+q.Encode()), "alice", "approve")
	resp, m := env.post("/token", url.Values{"grant_type": {"authorization_code"}, "code": {back.Query().Get("code")}, "code_verifier": {verifier}, "client_id": {"app"}, "redirect_uri": {loopbackRedirect}}, nil)
	if resp.StatusCode != 200 {
		env.t.Fatalf("exchange: %d %v", resp.StatusCode, m)
	}
	return m
}

func (env *testEnv) refreshWith(token string, extra ...string) (int, map[string]any) {
	env.t.Helper()
	v := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token}, "client_id": {"app"}}
	for i := 0; i < len(extra); i += 2 {
		v.Set(extra[i], extra[i+1])
	}
	resp, m := env.post("/token", v, nil)
	return resp.StatusCode, m
}

func TestRefreshRotationWithXOAuth2(t *testing.T) {
	env := newEnv(t, nil)
	m := env.tokensFor("tools:read tools:write")
	cfg := env.oauth2Config("app", "", loopbackRedirect)
	old := &oauth2.Token{AccessToken: m["access_token"].(string), RefreshToken: m["refresh_token"].(string), Expiry: time.Now().Add(-time.Hour)}
	tok, err := cfg.TokenSource(context.Background(), old).Token()
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken == "" || tok.RefreshToken == old.RefreshToken || tok.AccessToken == old.AccessToken {
		t.Fatalf("not rotated: %+v", tok)
	}
	p := verify(t, env, tok.AccessToken)
	if p.Subject != "alice" || strings.Join(p.Scopes, " ") != "tools:read tools:write" || p.ClientID != "app" {
		t.Errorf("principal %+v", p)
	}
	// Rotation alone does not revoke the access token it replaced.
	verify(t, env, old.AccessToken)
	if len(env.events.find(EventTokenRefreshed, mcpauth.OutcomeSuccess)) != 1 {
		t.Error("no refresh event")
	}

	// Scope can narrow for one access token; the grant stays whole.
	status, m := env.refreshWith(tok.RefreshToken, "scope", "tools:read")
	if status != 200 || m["scope"] != "tools:read" {
		t.Fatalf("narrowed refresh: %d %v", status, m)
	}
	status, m = env.refreshWith(m["refresh_token"].(string))
	if status != 200 || m["scope"] != "tools:read tools:write" {
		t.Fatalf("refresh after narrowing: %d %v", status, m)
	}
	// The resource may be named again (with a trailing slash, even).
	status, m = env.refreshWith(m["refresh_token"].(string), "resource", env.resource()+"/")
	if status != 200 {
		t.Fatalf("refresh with resource: %d %v", status, m)
	}
}

func TestRefreshErrors(t *testing.T) {
	env := newEnv(t, nil)
	m := env.tokensFor("tools:read")
	refresh := m["refresh_token"].(string)
	rt := func(kv ...string) string {
		v := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}, "client_id": {"app"}}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "" {
				v.Del(kv[i])
			} else {
				v.Set(kv[i], kv[i+1])
			}
		}
		return v.Encode()
	}
	runTokenCases(t, env, []tokenCase{
		{name: "widening scope", body: rt("scope", "tools:read tools:write"), status: 400, code: "invalid_scope"},
		{name: "unknown scope", body: rt("scope", "nope"), status: 400, code: "invalid_scope"},
		{name: "other resource", body: rt("resource", "https://other.example/mcp"), status: 400, code: "invalid_target"},
		{name: "other client", body: rt("client_id", "webapp", "client_secret", testSecret+"-web"), status: 400, code: "invalid_grant"},
		{name: "client without the grant", body: rt("client_id", "machine", "client_secret", testSecret), status: 400, code: "unauthorized_client"},
		{name: "public client with a secret", body: rt("client_secret", "x"), status: 401, code: "invalid_client"},
		{name: "unknown token", body: rt("refresh_token", "A"+refresh[1:]), status: 400, code: "invalid_grant"},
		{name: "no token", body: rt("refresh_token", ""), status: 400, code: "invalid_request"},
		{name: "duplicate token", body: rt() + "&refresh_token=" + refresh, status: 400, code: "invalid_request"},
	})
	if status, _ := env.refreshWith(refresh); status != 200 {
		t.Fatalf("the token stopped working after failed attempts: %d", status)
	}
	m = env.tokensFor("")
	env.clock.Advance(DefaultRefreshTokenTTL + time.Second)
	runTokenCases(t, env, []tokenCase{{name: "expired", body: url.Values{"grant_type": {"refresh_token"}, "refresh_token": {m["refresh_token"].(string)}, "client_id": {"app"}}.Encode(), status: 400, code: "invalid_grant"}})
}

func TestRefreshReuseRevokesFamily(t *testing.T) {
	env := newEnv(t, nil)
	m := env.tokensFor("")
	a, access1 := m["refresh_token"].(string), m["access_token"].(string)
	status, m := env.refreshWith(a)
	if status != 200 {
		t.Fatal(status)
	}
	b, access2 := m["refresh_token"].(string), m["access_token"].(string)

	before := snapshot(t, env.store)
	if status, m := env.refreshWith(a); status != 400 || m["error"] != "invalid_grant" {
		t.Fatalf("reuse: %d %v", status, m)
	}
	if got := strings.Join(kinds(diff(before, snapshot(t, env.store))), " "); got != "+as.family-revoked +revoked -as.refresh" {
		t.Errorf("reuse changed %s, want only the revocations", got)
	}
	if status, _ := env.refreshWith(b); status != 400 {
		t.Errorf("the family's live token still works: %d", status)
	}
	v, _ := env.as.Verifier()
	for _, at := range []string{access1, access2} {
		if _, err := v.Verify(context.Background(), at); !errors.Is(err, mcpauth.ErrRevoked) {
			t.Errorf("access token of the revoked family: %v", err)
		}
	}
	if e := env.events.find(EventReuseDetected, mcpauth.OutcomeFailure); len(e) != 1 || e[0].Reason != "refresh_token_reuse" || e[0].ClientID != "app" {
		t.Errorf("reuse events %+v", e)
	}
	// Another family of the same user and client is untouched.
	m = env.tokensFor("")
	if status, _ := env.refreshWith(m["refresh_token"].(string)); status != 200 {
		t.Errorf("another family: %d", status)
	}
}

func TestRefreshGracePeriod(t *testing.T) {
	env := newEnv(t, func(o *Options) { o.RefreshGracePeriod = 30 * time.Second })
	a := env.tokensFor("")["refresh_token"].(string)
	_, m := env.refreshWith(a)
	lost := m["refresh_token"].(string) // the response the client never saw
	env.clock.Advance(10 * time.Second)
	status, m := env.refreshWith(a)
	if status != 200 {
		t.Fatalf("within the grace period: %d %v", status, m)
	}
	c := m["refresh_token"].(string)
	if status, _ := env.refreshWith(lost); status != 400 {
		t.Errorf("the lost token still works: %d", status)
	}
	// Presenting the lost token was reuse: the family is gone.
	if status, _ := env.refreshWith(c); status != 400 {
		t.Errorf("family survived the reuse of the lost token: %d", status)
	}

	// After the grace period, the old token is reuse.
	a = env.tokensFor("")["refresh_token"].(string)
	_, m = env.refreshWith(a)
	b := m["refresh_token"].(string)
	env.clock.Advance(31 * time.Second)
	if status, _ := env.refreshWith(a); status != 400 {
		t.Errorf("after the grace period: %d", status)
	}
	if status, _ := env.refreshWith(b); status != 400 {
		t.Errorf("family survived reuse after the grace period: %d", status)
	}

	// Within the grace period, but the successor was used: reuse.
	a = env.tokensFor("")["refresh_token"].(string)
	_, m = env.refreshWith(a)
	_, m = env.refreshWith(m["refresh_token"].(string))
	d := m["refresh_token"].(string)
	if status, _ := env.refreshWith(a); status != 400 {
		t.Errorf("grace with a used successor: %d", status)
	}
	if status, _ := env.refreshWith(d); status != 400 {
		t.Errorf("family survived: %d", status)
	}
}

// Of many requests racing with one refresh token, at most one gets tokens.
func TestRefreshRace(t *testing.T) {
	env := newEnv(t, nil)
	token := env.tokensFor("")["refresh_token"].(string)
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := httpPostForm(env.url("/token"), url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token}, "client_id": {"app"}})
			if err == nil && resp == 200 {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	if wins.Load() > 1 {
		t.Errorf("%d requests redeemed one refresh token", wins.Load())
	}
}

// go-sdk's client refreshes when the access token expires (the server's
// clock is moved past it) without asking the user again.
func TestMCPRefreshAfterExpiry(t *testing.T) {
	for _, mode := range mcptest.Modes {
		t.Run(mode.Name, func(t *testing.T) {
			// x/oauth2 refreshes 10 s before a token expires: with 10 s
			// tokens it refreshes before each request, without waiting.
			env := newEnv(t, func(o *Options) { o.AccessTokenTTL = 10 * time.Second })
			endpoint := env.mountMCP(mode)
			var n atomic.Int32
			var first string
			h, err := auth.NewAuthorizationCodeHandler(&auth.AuthorizationCodeHandlerConfig{
				PreregisteredClient:      &oauthex.ClientCredentials{ClientID: "app"},
				RedirectURL:              "http://127.0.0.1:38111/callback",
				AuthorizationCodeFetcher: env.fetcher("alice", &n),
			})
			if err != nil {
				t.Fatal(err)
			}
			cs, err := connect(t, mode, endpoint, h)
			if err != nil {
				t.Fatal(err)
			}
			whoami(t, cs, "alice", "editor")
			ts, _ := h.TokenSource(context.Background())
			tok, _ := ts.Token()
			first = tok.AccessToken
			env.clock.Advance(11 * time.Second) // the server's view: the token has expired
			v, _ := env.as.Verifier()
			if _, err := v.Verify(context.Background(), first); !errors.Is(err, mcpauth.ErrExpired) {
				t.Fatalf("first token after the clock moved: %v", err)
			}
			whoami(t, cs, "alice", "editor")
			if n.Load() != 1 || len(env.events.find(EventTokenRefreshed, mcpauth.OutcomeSuccess)) == 0 {
				t.Errorf("%d authorizations, %d refreshes", n.Load(), len(env.events.find(EventTokenRefreshed, mcpauth.OutcomeSuccess)))
			}
		})
	}
}

// A client that refreshes in a loop keeps a bounded family record; the
// access tokens that drop out of it are revoked, so revoking the family
// still leaves none of its tokens working.
func TestRefreshLoopBounded(t *testing.T) {
	env := newEnv(t, nil)
	m := env.tokensFor("")
	var accesses []string
	tok := m["refresh_token"].(string)
	accesses = append(accesses, m["access_token"].(string))
	for range 3 * maxFamilyTokens {
		status, m := env.refreshWith(tok)
		if status != 200 {
			t.Fatal(status)
		}
		tok = m["refresh_token"].(string)
		accesses = append(accesses, m["access_token"].(string))
	}
	for k, v := range snapshot(t, env.store) {
		if strings.HasPrefix(k, keyFamily+":") && len(v) > 2048 {
			t.Errorf("family record of %d bytes", len(v))
		}
	}
	v, _ := env.as.Verifier()
	if _, err := v.Verify(context.Background(), accesses[0]); !errors.Is(err, mcpauth.ErrRevoked) {
		t.Errorf("oldest access token: %v", err)
	}
	if _, err := v.Verify(context.Background(), accesses[len(accesses)-1]); err != nil {
		t.Errorf("newest access token: %v", err)
	}
	env.post("/revoke", url.Values{"token": {tok}, "client_id": {"app"}}, nil)
	for i, at := range accesses {
		if _, err := v.Verify(context.Background(), at); !errors.Is(err, mcpauth.ErrRevoked) {
			t.Errorf("access token %d after revoking the family: %v", i, err)
		}
	}
}
