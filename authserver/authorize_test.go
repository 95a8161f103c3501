package authserver

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcpauth/mcpauth"
	"golang.org/x/oauth2"
)

const loopbackRedirect = "http://127.0.0.1:4567/callback"

func (env *testEnv) oauth2Config(clientID, secret, redirect string, scopes ...string) *oauth2.Config {
	style := oauth2.AuthStyleInParams
	if secret != "" {
		style = oauth2.AuthStyleInHeader
	}
	return &oauth2.Config{
		ClientID: clientID, ClientSecret: secret, RedirectURL: redirect, Scopes: scopes,
		Endpoint: oauth2.Endpoint{AuthURL: env.url("/authorize"), TokenURL: env.url("/token"), AuthStyle: style},
	}
}

func (env *testEnv) resource() string { return env.srv.URL + testResourceDir }

func TestCodeFlowWithXOAuth2(t *testing.T) {
	env := newEnv(t, nil)
	tests := []struct {
		name, client, secret, redirect, user string
		scopes                               []string
		wantScopes                           []string
		wantRoles                            []string
	}{
		{"public loopback", "app", "", loopbackRedirect, "alice", []string{"tools:read", "tools:write"}, []string{"tools:read", "tools:write"}, []string{"editor"}},
		{"public https", "app", "", "https://app.example/cb", "alice", []string{"admin"}, []string{"admin"}, []string{"editor"}},
		{"confidential", "webapp", testSecret + "-web", "https://web.example/cb", "alice", nil, []string{"tools:read"}, []string{"editor"}},
		{"user narrows scopes", "app", "", loopbackRedirect, "bob", []string{"tools:read", "tools:write"}, []string{"tools:read"}, []string{"admin"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := env.oauth2Config(tt.client, tt.secret, tt.redirect, tt.scopes...)
			verifier := oauth2.GenerateVerifier()
			authURL := cfg.AuthCodeURL("state-123", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", env.resource()))
			back := env.authorize(authURL, tt.user, "approve")
			q := back.Query()
			if got := back.Scheme + "://" + back.Host + back.Path; got != strings.SplitN(tt.redirect, "?", 2)[0] {
				t.Fatalf("redirected to %s", back)
			}
			if q.Get("state") != "state-123" || q.Get("iss") != env.as.Issuer() || q.Get("code") == "" {
				t.Fatalf("response %v", q)
			}
			tok, err := cfg.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier), oauth2.SetAuthURLParam("resource", env.resource()))
			if err != nil {
				t.Fatal(err)
			}
			if tok.RefreshToken == "" || tok.Extra("scope") != strings.Join(tt.wantScopes, " ") {
				t.Errorf("token %+v scope %v", tok, tok.Extra("scope"))
			}
			p := verify(t, env, tok.AccessToken)
			if p.Subject != tt.user || p.ClientID != tt.client || !slices.Equal(p.Scopes, tt.wantScopes) || !slices.Equal(p.Roles, tt.wantRoles) {
				t.Errorf("principal %+v", p)
			}
		})
	}
	for _, k := range []mcpauth.EventKind{EventLogin, EventConsent, EventTokenIssued} {
		if len(env.events.find(k, mcpauth.OutcomeSuccess)) < len(tests) {
			t.Errorf("too few %s events", k)
		}
	}
}

func TestDeny(t *testing.T) {
	env := newEnv(t, nil)
	cfg := env.oauth2Config("app", "", loopbackRedirect)
	back := env.authorize(cfg.AuthCodeURL("s1", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), "alice", "deny")
	q := back.Query()
	if q.Get("error") != "access_denied" || q.Get("state") != "s1" || q.Get("iss") != env.as.Issuer() || q.Get("code") != "" {
		t.Fatalf("deny: %v", q)
	}
	if len(env.events.find(EventConsent, mcpauth.OutcomeDenied)) != 1 {
		t.Error("no consent denied event")
	}
}

func TestOmitIssParameter(t *testing.T) {
	env := newEnv(t, func(o *Options) { o.OmitIssParameter = true })
	cfg := env.oauth2Config("app", "", loopbackRedirect)
	for _, d := range []string{"approve", "deny"} {
		back := env.authorize(cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), "alice", d)
		if back.Query().Has("iss") {
			t.Errorf("%s: iss sent: %v", d, back.Query())
		}
	}
}

// authorizeQuery is a good authorization request for app.
func (env *testEnv) authorizeQuery() url.Values {
	return url.Values{
		"response_type":         {"code"},
		"client_id":             {"app"},
		"redirect_uri":          {loopbackRedirect},
		"state":                 {"st"},
		"code_challenge":        {oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())},
		"code_challenge_method": {"S256"},
	}
}

func TestAuthorizeRefusedWithoutRedirect(t *testing.T) {
	env := newEnv(t, func(o *Options) {
		o.Clients = append(o.Clients, Client{ID: "one", RedirectURIs: []string{"https://one.example/cb"}})
	})
	tests := []struct {
		name   string
		change func(q url.Values)
		raw    string // appended to the query as it is
	}{
		{name: "unknown client", change: func(q url.Values) { q.Set("client_id", "nobody") }},
		{name: "no client", change: func(q url.Values) { q.Del("client_id") }},
		{name: "unregistered redirect", change: func(q url.Values) { q.Set("redirect_uri", "https://evil.example/cb") }},
		{name: "redirect path differs", change: func(q url.Values) { q.Set("redirect_uri", "http://127.0.0.1:4567/other") }},
		{name: "redirect host differs", change: func(q url.Values) { q.Set("redirect_uri", "http://localhost:4567/callback") }},
		{name: "redirect with fragment", change: func(q url.Values) { q.Set("redirect_uri", loopbackRedirect+"#x") }},
		{name: "redirect http elsewhere", change: func(q url.Values) { q.Set("redirect_uri", "http://app.example/cb") }},
		{name: "redirect scheme case", change: func(q url.Values) { q.Set("redirect_uri", "HTTPS://app.example/cb") }},
		{name: "redirect prefix of registered", change: func(q url.Values) { q.Set("redirect_uri", "https://app.example/c") }},
		{name: "redirect registered plus query", change: func(q url.Values) { q.Set("redirect_uri", "https://app.example/cb?x=1") }},
		{name: "no redirect with loopback registered", change: func(q url.Values) { q.Del("redirect_uri") }},
		{name: "duplicate client id", raw: "&client_id=app"},
		{name: "duplicate redirect", raw: "&redirect_uri=" + url.QueryEscape(loopbackRedirect)},
		{name: "state too long", change: func(q url.Values) { q.Set("state", strings.Repeat("s", maxStateLen+1)) }},
		{name: "malformed query", raw: "&x=%zz"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := env.authorizeQuery()
			if tt.change != nil {
				tt.change(q)
			}
			before := snapshot(t, env.store)
			p := newBrowser(t).get(env.url("/authorize?" + q.Encode() + tt.raw))
			if p.status != http.StatusBadRequest || p.header.Get("Location") != "" || !strings.HasPrefix(p.header.Get("Content-Type"), "text/html") {
				t.Fatalf("%d Location %q", p.status, p.header.Get("Location"))
			}
			checkPageHeaders(t, p)
			if d := diff(before, snapshot(t, env.store)); len(d) > 0 {
				t.Errorf("store changed: %v", d)
			}
		})
	}
	// With one registered https URI, the parameter may be left out.
	q := env.authorizeQuery()
	q.Set("client_id", "one")
	q.Del("redirect_uri")
	if p := newBrowser(t).get(env.url("/authorize?" + q.Encode())); p.status != 200 {
		t.Errorf("one registered redirect, none given: %d", p.status)
	}
}

func checkPageHeaders(t *testing.T, p *page) {
	t.Helper()
	csp := p.header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "form-action 'self'", "frame-ancestors 'none'", "style-src 'sha256-"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if p.header.Get("X-Frame-Options") != "DENY" || p.header.Get("Cache-Control") != "no-store" || p.header.Get("Referrer-Policy") != "no-referrer" {
		t.Errorf("headers %v", p.header)
	}
}

func TestAuthorizeErrorsGoBackToClient(t *testing.T) {
	env := newEnv(t, nil)
	tests := []struct {
		name   string
		change func(q url.Values)
		code   string
	}{
		{"no code challenge", func(q url.Values) { q.Del("code_challenge") }, "invalid_request"},
		{"no challenge method", func(q url.Values) { q.Del("code_challenge_method") }, "invalid_request"},
		{"plain method", func(q url.Values) { q.Set("code_challenge_method", "plain") }, "invalid_request"},
		{"short challenge", func(q url.Values) { q.Set("code_challenge", "abc") }, "invalid_request"},
		{"challenge not base64url", func(q url.Values) { q.Set("code_challenge", strings.Repeat("+", 43)) }, "invalid_request"},
		{"no response type", func(q url.Values) { q.Del("response_type") }, "invalid_request"},
		{"token response type", func(q url.Values) { q.Set("response_type", "token") }, "unsupported_response_type"},
		{"unknown scope", func(q url.Values) { q.Set("scope", "tools:read root") }, "invalid_scope"},
		{"wrong resource", func(q url.Values) { q.Set("resource", "https://other.example/mcp") }, "invalid_target"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := env.authorizeQuery()
			tt.change(q)
			before := snapshot(t, env.store)
			back := newBrowser(t).get(env.url("/authorize?" + q.Encode())).location(t)
			if !strings.HasPrefix(back.String(), loopbackRedirect+"?") {
				t.Fatalf("redirected to %s", back)
			}
			got := back.Query()
			if got.Get("error") != tt.code || got.Get("state") != "st" || got.Get("iss") != env.as.Issuer() || got.Has("code") {
				t.Errorf("%v, want error %s with state and iss", got, tt.code)
			}
			if d := diff(before, snapshot(t, env.store)); len(d) > 0 {
				t.Errorf("store changed: %v", d)
			}
		})
	}
}

func TestLoopbackRedirectAnyPort(t *testing.T) {
	env := newEnv(t, func(o *Options) {
		o.Clients = append(o.Clients, Client{ID: "v6", RedirectURIs: []string{"http://[::1]/cb", "http://localhost:8080/cb"}})
	})
	for _, tt := range []struct{ client, redirect string }{
		{"app", "http://127.0.0.1:1/callback"},
		{"app", "http://127.0.0.1:65535/callback"},
		{"app", "http://127.0.0.1/callback"},
		{"v6", "http://[::1]:33333/cb"},
		{"v6", "http://localhost:9/cb"},
	} {
		q := env.authorizeQuery()
		q.Set("client_id", tt.client)
		q.Set("redirect_uri", tt.redirect)
		back := env.authorize(env.url("/authorize?"+q.Encode()), "alice", "approve")
		if !strings.HasPrefix(back.String(), tt.redirect+"?") {
			t.Errorf("%s: redirected to %s", tt.redirect, back)
		}
	}
}

func TestPrivateUseSchemeGetsALinkPage(t *testing.T) {
	env := newEnv(t, func(o *Options) {
		o.Clients = append(o.Clients, Client{ID: "cursor", Name: "Cursor", RedirectURIs: []string{"cursor://anysphere.cursor-mcp/oauth/callback"}})
	})
	q := env.authorizeQuery()
	q.Set("client_id", "cursor")
	q.Set("redirect_uri", "cursor://anysphere.cursor-mcp/oauth/callback")
	b := newBrowser(t)
	p := b.login(env.srv.URL, b.get(env.url("/authorize?"+q.Encode())), "alice", testPassword)
	if !strings.Contains(p.body, "cursor://anysphere.cursor-mcp") {
		t.Fatalf("consent page does not name the app's scheme: %.800s", p.body)
	}
	p = b.decide(env.srv.URL, p, "approve")
	if p.status != 200 || p.header.Get("Location") != "" {
		t.Fatalf("%d Location %q", p.status, p.header.Get("Location"))
	}
	checkPageHeaders(t, p)
	i := strings.Index(p.body, `href="cursor://anysphere.cursor-mcp/oauth/callback?code=`)
	if i < 0 {
		t.Fatalf("no link to the app: %s", p.body)
	}
	if !strings.Contains(p.body[i:], "iss=") || !strings.Contains(p.body[i:], "state=st") {
		t.Errorf("link lacks iss or state: %s", p.body[i:])
	}
	// A scheme not on the allowlist is refused before anything is shown.
	env2 := newEnv(t, func(o *Options) {
		o.RedirectSchemes = []string{"vscode"}
	})
	if _, err := New(&Options{Issuer: "https://a.example", Resources: []string{"https://a.example/mcp"}, RedirectSchemes: []string{"vscode"},
		Clients: []Client{{ID: "c", RedirectURIs: []string{"cursor://x/cb"}}}}); err == nil {
		t.Error("cursor:// accepted without being on the allowlist")
	}
	_ = env2
}

func TestConsentPageEscapesAndNames(t *testing.T) {
	env := newEnv(t, func(o *Options) {
		o.Clients = append(o.Clients, Client{ID: "evil", Name: `<script>alert("x")</script>`, RedirectURIs: []string{"https://evil.example/cb"}})
	})
	q := env.authorizeQuery()
	q.Set("client_id", "evil")
	q.Set("redirect_uri", "https://evil.example/cb")
	q.Set("scope", "tools:read tools:write")
	b := newBrowser(t)
	login := b.get(env.url("/authorize?" + q.Encode()))
	checkPageHeaders(t, login)
	if !strings.Contains(login.header.Get("Content-Security-Policy"), "form-action 'self' https://evil.example") {
		t.Errorf("CSP %q does not let the consent form redirect to the client", login.header.Get("Content-Security-Policy"))
	}
	p := b.login(env.srv.URL, login, "alice", testPassword)
	checkPageHeaders(t, p)
	if strings.Contains(p.body, "<script>") || !strings.Contains(p.body, "&lt;script&gt;") {
		t.Errorf("client name not escaped: %.1000s", p.body)
	}
	for _, want := range []string{"evil.example", "tools:read", "tools:write", env.resource(), ">Approve</button>", ">Deny</button>", "alice"} {
		if !strings.Contains(p.body, want) {
			t.Errorf("consent page lacks %q", want)
		}
	}
	// The loopback warning is for loopback redirects only.
	if strings.Contains(p.body, "your own computer") {
		t.Error("loopback warning for an https redirect")
	}
	q = env.authorizeQuery()
	b = newBrowser(t)
	p = b.login(env.srv.URL, b.get(env.url("/authorize?"+q.Encode())), "alice", testPassword)
	if !strings.Contains(p.body, "your own computer") || !strings.Contains(p.body, "127.0.0.1:4567") {
		t.Errorf("no loopback warning: %.1500s", p.body)
	}
}

func TestConsentBoundToBrowserAndForm(t *testing.T) {
	env := newEnv(t, nil)
	start := func() (*browser, *page) {
		b := newBrowser(t)
		return b, b.login(env.srv.URL, b.get(env.url("/authorize?"+env.authorizeQuery().Encode())), "alice", testPassword)
	}
	// Another browser cannot complete the consent, even with the form.
	_, consent := start()
	action, f := consent.form(t)
	f.Set("decision", "approve")
	if p := newBrowser(t).post(env.srv.URL+action, f); p.status != http.StatusForbidden {
		t.Errorf("other browser: %d", p.status)
	}
	// Nor can this browser with another CSRF token.
	b, consent := start()
	action, f = consent.form(t)
	f.Set("decision", "approve")
	good := f.Get("csrf")
	last := "A"
	if strings.HasSuffix(good, "A") {
		last = "B"
	}
	f.Set("csrf", good[:len(good)-1]+last)
	if p := b.post(env.srv.URL+action, f); p.status != http.StatusForbidden {
		t.Errorf("wrong csrf: %d", p.status)
	}
	f.Del("csrf")
	if p := b.post(env.srv.URL+action, f); p.status != http.StatusForbidden {
		t.Errorf("no csrf: %d", p.status)
	}
	// With both, it works once.
	f.Set("csrf", good)
	if p := b.post(env.srv.URL+action, f); p.status != http.StatusSeeOther {
		t.Fatalf("good form: %d %.300s", p.status, p.body)
	}
	if p := b.post(env.srv.URL+action, f); p.status != http.StatusBadRequest {
		t.Errorf("second decision: %d", p.status)
	}
	// A consent form posted before the login is refused.
	b = newBrowser(t)
	login := b.get(env.url("/authorize?" + env.authorizeQuery().Encode()))
	_, f = login.form(t)
	f.Set("decision", "approve")
	if p := b.post(env.url("/authorize/consent"), f); p.status != http.StatusBadRequest || p.header.Get("Location") != "" {
		t.Errorf("consent before login: %d", p.status)
	}
	// An expired transaction is gone.
	b = newBrowser(t)
	login = b.get(env.url("/authorize?" + env.authorizeQuery().Encode()))
	env.clock.Advance(transactionTTL + time.Second)
	if p := b.login(env.srv.URL, login, "alice", testPassword); p.status != http.StatusBadRequest || !strings.Contains(p.body, "expired") {
		t.Errorf("expired transaction: %d", p.status)
	}
}

func TestLoginFailures(t *testing.T) {
	env := newEnv(t, nil)
	b := newBrowser(t)
	p := b.get(env.url("/authorize?" + env.authorizeQuery().Encode()))
	for i := 1; i < maxLoginFailures; i++ {
		user := "alice"
		if i%2 == 0 {
			user = "nobody"
		}
		action, f := p.form(t)
		f.Set("username", user)
		f.Set("password", "wrong")
		p = b.post(env.srv.URL+action, f)
		if p.status != http.StatusUnauthorized || !strings.Contains(p.body, "wrong") || strings.Contains(p.body, "Approve") {
			t.Fatalf("failure %d: %d %.300s", i, p.status, p.body)
		}
	}
	action, f := p.form(t)
	f.Set("username", "alice")
	f.Set("password", "wrong")
	if p = b.post(env.srv.URL+action, f); p.status != http.StatusForbidden {
		t.Fatalf("last failure: %d", p.status)
	}
	// The transaction is over: not even the right password helps now.
	f.Set("password", testPassword)
	if p = b.post(env.srv.URL+action, f); p.status != http.StatusBadRequest {
		t.Errorf("after too many failures: %d", p.status)
	}
	fails := env.events.find(EventLogin, mcpauth.OutcomeFailure)
	if len(fails) != maxLoginFailures || fails[0].Reason != "login_failed" {
		t.Errorf("login failure events: %+v", fails)
	}
	for _, e := range env.events.all() {
		if strings.Contains(e.Subject+e.Detail+e.Reason, "wrong") || strings.Contains(e.Subject+e.Detail, testPassword) {
			t.Errorf("event with a password: %+v", e)
		}
	}
}

func TestNoScopeGrantsDefaults(t *testing.T) {
	env := newEnv(t, nil)
	q := env.authorizeQuery()
	verifier := oauth2.GenerateVerifier()
	q.Set("code_challenge", oauth2.S256ChallengeFromVerifier(verifier))
	back := env.authorize(env.url("/authorize?"+q.Encode()), "alice", "approve")
	tok, err := env.oauth2Config("app", "", loopbackRedirect).Exchange(context.Background(), back.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if tok.Extra("scope") != "tools:read" {
		t.Errorf("scope %v, want the default tools:read", tok.Extra("scope"))
	}
	if aud := claims(t, tok.AccessToken)["aud"]; aud != env.resource() {
		t.Errorf("aud %v, want the default resource", aud)
	}
}

func TestRememberConsent(t *testing.T) {
	for _, remember := range []time.Duration{0, time.Hour} {
		env := newEnv(t, func(o *Options) { o.RememberConsent = remember })
		env.authorize(env.url("/authorize?"+env.authorizeQuery().Encode()), "alice", "approve")
		b := newBrowser(t)
		p := b.login(env.srv.URL, b.get(env.url("/authorize?"+env.authorizeQuery().Encode())), "alice", testPassword)
		asked := strings.Contains(p.body, ">Approve</button>")
		if asked != (remember == 0) {
			t.Errorf("remember %v: consent asked again: %v (%d)", remember, asked, p.status)
		}
		if remember > 0 {
			if back := p.location(t); back.Query().Get("code") == "" {
				t.Errorf("remembered consent: %s", back)
			}
			// Another scope set asks again.
			q := env.authorizeQuery()
			q.Set("scope", "tools:write")
			p = b.login(env.srv.URL, b.get(env.url("/authorize?"+q.Encode())), "alice", testPassword)
			if !strings.Contains(p.body, ">Approve</button>") {
				t.Error("consent remembered for another scope set")
			}
		}
	}
}
