package authserver

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/mcpauth/mcpauth"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

func TestClientCredentialsWithXOAuth2(t *testing.T) {
	env := newEnv(t, nil)
	for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleInHeader, oauth2.AuthStyleInParams, oauth2.AuthStyleAutoDetect} {
		cfg := clientcredentials.Config{
			ClientID:       "machine",
			ClientSecret:   testSecret,
			TokenURL:       env.url("/token"),
			Scopes:         []string{"tools:write"},
			AuthStyle:      style,
			EndpointParams: url.Values{"resource": {env.srv.URL + testResourceDir + "/"}},
		}
		tok, err := cfg.Token(context.Background())
		if err != nil {
			t.Fatalf("style %d: %v", style, err)
		}
		if tok.TokenType != "Bearer" || tok.RefreshToken != "" || tok.Extra("scope") != "tools:write" || tok.Expiry.IsZero() {
			t.Errorf("style %d: %+v scope %v", style, tok, tok.Extra("scope"))
		}
		p := verify(t, env, tok.AccessToken)
		if p.Subject != "machine" || p.ClientID != "machine" || p.Method != mcpauth.MethodOAuth ||
			!slices.Equal(p.Roles, []string{"service"}) || !slices.Equal(p.Scopes, []string{"tools:write"}) {
			t.Errorf("principal %+v", p)
		}
		c := claims(t, tok.AccessToken)
		if c["aud"] != env.srv.URL+testResourceDir || c["iss"] != env.as.issuer || c["jti"] == "" {
			t.Errorf("claims %v", c)
		}
	}
	if n := len(env.events.find(EventTokenIssued, mcpauth.OutcomeSuccess)); n != 3 {
		t.Errorf("%d token_issued events, want 3", n)
	}
}

func TestClientCredentialsScopes(t *testing.T) {
	env := newEnv(t, nil)
	tests := []struct {
		scope   string
		want    string // granted, or the error code
		success bool
	}{
		{"", "tools:read", true}, // the client's defaults
		{"tools:write tools:read", "tools:read tools:write", true},
		{"tools:read  tools:read", "tools:read", true},
		{"offline_access", "tools:read", true}, // asks only for a refresh token, which this grant never has
		{"admin", "invalid_scope", false},      // known, not allowed to the client
		{"nonsense", "invalid_scope", false},
		{"tools:read \"x", "invalid_scope", false},
	}
	for _, tt := range tests {
		form := url.Values{"grant_type": {"client_credentials"}}
		if tt.scope != "" {
			form.Set("scope", tt.scope)
		}
		resp, m := env.post("/token", form, basicAuth("machine", testSecret))
		if tt.success {
			if resp.StatusCode != 200 || m["scope"] != tt.want || m["refresh_token"] != nil {
				t.Errorf("scope %q: %d %v", tt.scope, resp.StatusCode, m)
			}
		} else if resp.StatusCode != 400 || m["error"] != tt.want {
			t.Errorf("scope %q: %d %v, want %s", tt.scope, resp.StatusCode, m, tt.want)
		}
	}
}

// tokenCase is one request to the token endpoint that must fail.
type tokenCase struct {
	name   string
	body   string // form-encoded unless contentType says otherwise
	ctype  string
	header http.Header
	status int
	code   string
	// basic says WWW-Authenticate: Basic must be in the answer.
	basic bool
}

// runTokenCases sends each case and checks its answer, and that it changed
// nothing in the store.
func runTokenCases(t *testing.T, env *testEnv, cases []tokenCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := snapshot(t, env.store)
			req := mustRequest(t, "POST", env.url("/token"), strings.NewReader(tc.body))
			ct := tc.ctype
			if ct == "" {
				ct = "application/x-www-form-urlencoded"
			}
			req.Header.Set("Content-Type", ct)
			for k, v := range tc.header {
				req.Header[k] = v
			}
			resp, m := env.do(req)
			if resp.StatusCode != tc.status || m["error"] != tc.code {
				t.Fatalf("%d %v, want %d %s", resp.StatusCode, m, tc.status, tc.code)
			}
			if resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("Pragma") != "no-cache" {
				t.Errorf("cache headers %v", resp.Header)
			}
			if got := strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic "); got != tc.basic {
				t.Errorf("WWW-Authenticate %q", resp.Header.Get("WWW-Authenticate"))
			}
			if d := diff(before, snapshot(t, env.store)); len(d) > 0 {
				t.Errorf("the store changed: %v", d)
			}
		})
	}
}

func TestClientCredentialsErrors(t *testing.T) {
	env := newEnv(t, nil)
	env.ccToken("") // make the keys, so that they are not a change
	cc := "grant_type=client_credentials"
	good := basicAuth("machine", testSecret)
	big := cc + "&x=" + strings.Repeat("a", MaxBodySize)
	runTokenCases(t, env, []tokenCase{
		{name: "wrong secret basic", body: cc, header: basicAuth("machine", testSecret+"x"), status: 401, code: "invalid_client", basic: true},
		{name: "wrong secret post", body: cc + "&client_id=machine&client_secret=nope", status: 401, code: "invalid_client"},
		{name: "no secret", body: cc + "&client_id=machine", status: 401, code: "invalid_client"},
		{name: "empty basic password", body: cc, header: basicAuth("machine", ""), status: 401, code: "invalid_client", basic: true},
		{name: "unknown client basic", body: cc, header: basicAuth("nobody", testSecret), status: 401, code: "invalid_client", basic: true},
		{name: "unknown client post", body: cc + "&client_id=nobody&client_secret=x", status: 401, code: "invalid_client"},
		{name: "no client", body: cc, status: 401, code: "invalid_client"},
		{name: "bad basic encoding", body: cc, header: http.Header{"Authorization": {"Basic !!!"}}, status: 401, code: "invalid_client", basic: true},
		{name: "bearer instead of basic", body: cc, header: http.Header{"Authorization": {"Bearer x"}}, status: 400, code: "invalid_request"},
		{name: "two authorization headers", body: cc, header: http.Header{"Authorization": {good["Authorization"][0], good["Authorization"][0]}}, status: 400, code: "invalid_request"},
		{name: "basic and post", body: cc + "&client_secret=" + testSecret, header: good, status: 400, code: "invalid_request"},
		{name: "basic and other client_id", body: cc + "&client_id=app", header: good, status: 400, code: "invalid_request"},
		{name: "public client", body: cc + "&client_id=app", status: 400, code: "unauthorized_client"},
		{name: "client without the grant", body: cc, header: basicAuth("webapp", testSecret+"-web"), status: 400, code: "unauthorized_client"},
		{name: "scope not allowed", body: cc + "&scope=admin", header: good, status: 400, code: "invalid_scope"},
		{name: "wrong resource", body: cc + "&resource=" + url.QueryEscape("https://elsewhere.example/mcp"), header: good, status: 400, code: "invalid_target"},
		{name: "resource with fragment", body: cc + "&resource=" + url.QueryEscape(env.srv.URL+"/mcp#x"), header: good, status: 400, code: "invalid_target"},
		{name: "no grant type", body: "scope=tools:read", header: good, status: 400, code: "invalid_request"},
		{name: "unknown grant type", body: "grant_type=password&username=a&password=b", header: good, status: 400, code: "unsupported_grant_type"},
		{name: "implicit grant", body: "grant_type=implicit", header: good, status: 400, code: "unsupported_grant_type"},
		{name: "duplicate parameter", body: cc + "&scope=tools:read&scope=tools:write", header: good, status: 400, code: "invalid_request"},
		{name: "duplicate grant type", body: cc + "&" + cc, header: good, status: 400, code: "invalid_request"},
		{name: "malformed form", body: cc + "&scope=%zz", header: good, status: 400, code: "invalid_request"},
		{name: "semicolon form", body: cc + ";scope=tools:read", header: good, status: 400, code: "invalid_request"},
		{name: "oversized body", body: big, header: good, status: 400, code: "invalid_request"},
		{name: "wrong content type", body: cc, ctype: "text/plain", header: good, status: 400, code: "invalid_request"},
		{name: "no content type", body: cc, ctype: "", header: http.Header{"Content-Type": {""}, "Authorization": good["Authorization"]}, status: 400, code: "invalid_request"},
		{name: "json not an object", body: `["client_credentials"]`, ctype: "application/json", header: good, status: 400, code: "invalid_request"},
		{name: "json number", body: `{"grant_type":"client_credentials","scope":1}`, ctype: "application/json", header: good, status: 400, code: "invalid_request"},
		{name: "json duplicate member", body: `{"grant_type":"client_credentials","grant_type":"client_credentials"}`, ctype: "application/json", header: good, status: 400, code: "invalid_request"},
		{name: "json oversized", body: `{"grant_type":"client_credentials","x":"` + strings.Repeat("a", MaxBodySize) + `"}`, ctype: "application/json", header: good, status: 400, code: "invalid_request"},
	})
	// Failures are reported, never with the secret.
	for _, e := range env.events.all() {
		if strings.Contains(e.Detail+e.Reason+e.Subject+e.KeyID+e.ClientID, testSecret) {
			t.Errorf("event with the secret: %+v", e)
		}
	}
	if len(env.events.find(EventTokenIssued, mcpauth.OutcomeFailure)) < 20 {
		t.Error("failures were not all reported")
	}
}

func TestTokenEndpointAcceptsJSON(t *testing.T) {
	env := newEnv(t, nil)
	req := mustRequest(t, "POST", env.url("/token"), strings.NewReader(`{"grant_type":"client_credentials","client_id":"machine","client_secret":"`+testSecret+`","scope":"tools:write"}`))
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	resp, m := env.do(req)
	if resp.StatusCode != 200 || m["scope"] != "tools:write" || m["token_type"] != "Bearer" {
		t.Fatalf("%d %v", resp.StatusCode, m)
	}
	if resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("Pragma") != "no-cache" {
		t.Errorf("cache headers %v", resp.Header)
	}
}
