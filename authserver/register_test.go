package authserver

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/mcpauth/mcpauth"
	"golang.org/x/oauth2"
)

func (env *testEnv) register(body string, header http.Header) (*http.Response, map[string]any) {
	env.t.Helper()
	req := mustRequest(env.t, "POST", env.url("/register"), strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header[k] = v
	}
	return env.do(req)
}

// The redirect URIs of the clients MCP users connect, each registered with
// nothing configured for it here.
func TestRegisterRealClients(t *testing.T) {
	env := newEnv(t, func(o *Options) { o.Registration.Burst = 100 })
	for _, tt := range []struct {
		name     string
		redirect []string
		appType  string
	}{
		{"Claude", []string{"https://claude.ai/api/mcp/auth_callback", "https://claude.com/api/mcp/auth_callback"}, "web"},
		{"Claude Code", []string{"http://localhost:54321/callback"}, "native"},
		{"VS Code", []string{"http://127.0.0.1:33418/", "https://vscode.dev/redirect"}, "native"},
		{"Cursor", []string{"cursor://anysphere.cursor-mcp/oauth/callback"}, "native"},
		{"ChatGPT", []string{"https://chatgpt.com/connector_platform_oauth_redirect"}, "web"},
		{"Codex", []string{"http://127.0.0.1:1455/auth/callback"}, "native"},
	} {
		body, _ := json.Marshal(map[string]any{"client_name": tt.name, "redirect_uris": tt.redirect, "token_endpoint_auth_method": "none",
			"grant_types": []string{"authorization_code", "refresh_token"}, "response_types": []string{"code"}})
		resp, m := env.register(string(body), nil)
		if resp.StatusCode != 201 || m["client_secret"] != nil || m["application_type"] != tt.appType || m["client_name"] != tt.name {
			t.Errorf("%s: %d %v", tt.name, resp.StatusCode, m)
			continue
		}
		if got, _ := json.Marshal(m["redirect_uris"]); string(got) != mustJSON(tt.redirect) {
			t.Errorf("%s: redirect_uris echoed as %s", tt.name, got)
		}
		// The client then completes a code flow on the first redirect URI
		// (on another port, for a loopback one).
		redirect := tt.redirect[0]
		if strings.HasPrefix(redirect, "http://localhost:54321") {
			redirect = "http://localhost:60000/callback"
		}
		verifier := oauth2.GenerateVerifier()
		cfg := env.oauth2Config(m["client_id"].(string), "", redirect)
		b := newBrowser(t)
		p := b.login(env.srv.URL, b.get(cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier))), "alice", testPassword)
		if !strings.Contains(p.body, "registered itself") {
			t.Errorf("%s: the consent page does not say the name is unverified", tt.name)
		}
		p = b.decide(env.srv.URL, p, "approve")
		var code string
		if p.status == http.StatusSeeOther {
			code = p.location(t).Query().Get("code")
		} else if i := strings.Index(p.body, "code="); i >= 0 {
			code, _, _ = strings.Cut(p.body[i+5:], "&")
		}
		if _, err := cfg.Exchange(t.Context(), code, oauth2.VerifierOption(verifier)); err != nil {
			t.Errorf("%s: exchange: %v", tt.name, err)
		}
	}
}

func TestRegisterConfidential(t *testing.T) {
	env := newEnv(t, nil)
	resp, m := env.register(`{"redirect_uris":["https://web.example/cb"],"client_name":"Web","jwks":{"keys":[]},"Redirect_URIs":["https://evil.example"],"extension":1}`, nil)
	if resp.StatusCode != 201 || m["token_endpoint_auth_method"] != "client_secret_basic" || m["client_secret"] == nil {
		t.Fatalf("%d %v", resp.StatusCode, m)
	}
	if v, ok := m["client_secret_expires_at"]; !ok || v != float64(0) {
		t.Errorf("client_secret_expires_at %v", v)
	}
	if got := mustJSON(m["redirect_uris"]); got != `["https://web.example/cb"]` {
		t.Errorf("redirect_uris %s", got)
	}
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Error("registration response may be cached")
	}
	id, secret := m["client_id"].(string), m["client_secret"].(string)
	for k, v := range snapshot(t, env.store) {
		if strings.Contains(v, secret) || strings.Contains(k, secret) {
			t.Errorf("%s holds the secret", k)
		}
	}
	// The secret authenticates the client; a wrong one does not.
	cfg := env.oauth2Config(id, secret, "https://web.example/cb")
	verifier := oauth2.GenerateVerifier()
	back := env.authorize(cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier)), "alice", "approve")
	bad := env.oauth2Config(id, secret+"x", "https://web.example/cb")
	if _, err := bad.Exchange(t.Context(), back.Query().Get("code"), oauth2.VerifierOption(verifier)); err == nil {
		t.Error("exchange with a wrong secret")
	}
	if _, err := cfg.Exchange(t.Context(), back.Query().Get("code"), oauth2.VerifierOption(verifier)); err != nil {
		t.Errorf("exchange: %v", err)
	}
	if len(env.events.find(EventClientRegistered, mcpauth.OutcomeSuccess)) != 1 {
		t.Error("no registration event")
	}
}

func TestRegisterErrors(t *testing.T) {
	env := newEnv(t, func(o *Options) { o.Registration.Burst = 100 })
	for _, tt := range []struct {
		name, body, ctype, code string
	}{
		{"no redirect uris", `{"client_name":"x"}`, "", "invalid_redirect_uri"},
		{"http elsewhere", `{"redirect_uris":["http://app.example/cb"]}`, "", "invalid_redirect_uri"},
		{"javascript", `{"redirect_uris":["javascript:alert(1)"]}`, "", "invalid_redirect_uri"},
		{"fragment", `{"redirect_uris":["https://app.example/cb#x"]}`, "", "invalid_redirect_uri"},
		{"unlisted scheme", `{"redirect_uris":["myapp://cb"]}`, "", "invalid_redirect_uri"},
		{"web app on loopback", `{"redirect_uris":["http://127.0.0.1/cb"],"application_type":"web"}`, "", "invalid_redirect_uri"},
		{"too many redirect uris", `{"redirect_uris":["https://a/1","https://a/2","https://a/3","https://a/4","https://a/5","https://a/6","https://a/7","https://a/8","https://a/9","https://a/10","https://a/11"]}`, "", "invalid_redirect_uri"},
		{"client credentials", `{"redirect_uris":["https://a/cb"],"grant_types":["client_credentials"]}`, "", "invalid_client_metadata"},
		{"implicit", `{"redirect_uris":["https://a/cb"],"response_types":["token"]}`, "", "invalid_client_metadata"},
		{"private_key_jwt", `{"redirect_uris":["https://a/cb"],"token_endpoint_auth_method":"private_key_jwt"}`, "", "invalid_client_metadata"},
		{"bad application type", `{"redirect_uris":["https://a/cb"],"application_type":"desktop"}`, "", "invalid_client_metadata"},
		{"redirect not a list", `{"redirect_uris":"https://a/cb"}`, "", "invalid_client_metadata"},
		{"duplicate member", `{"redirect_uris":["https://a/cb"],"redirect_uris":["https://b/cb"]}`, "", "invalid_client_metadata"},
		{"not json", `redirect_uris=https://a/cb`, "", "invalid_client_metadata"},
		{"form content type", `{"redirect_uris":["https://a/cb"]}`, "application/x-www-form-urlencoded", "invalid_client_metadata"},
		{"oversized", `{"redirect_uris":["https://a/cb"],"client_name":"` + strings.Repeat("n", MaxBodySize) + `"}`, "", "invalid_client_metadata"},
	} {
		req := mustRequest(t, "POST", env.url("/register"), strings.NewReader(tt.body))
		ct := tt.ctype
		if ct == "" {
			ct = "application/json"
		}
		req.Header.Set("Content-Type", ct)
		before := snapshot(t, env.store)
		resp, m := env.do(req)
		if resp.StatusCode != 400 || m["error"] != tt.code {
			t.Errorf("%s: %d %v, want %s", tt.name, resp.StatusCode, m, tt.code)
		}
		if d := diff(before, snapshot(t, env.store)); len(d) > 0 {
			t.Errorf("%s: store changed: %v", tt.name, d)
		}
	}
	// Names are bounded and cleaned; scopes unknown here are dropped.
	resp, m := env.register(`{"redirect_uris":["https://a/cb"],"client_name":"A\u0000B\u202eC`+strings.Repeat("x", 300)+`","scope":"tools:read offline_access nonsense","logo_uri":"http://a/logo.png","client_uri":"https://a/"}`, nil)
	if resp.StatusCode != 201 || !strings.HasPrefix(m["client_name"].(string), "ABC") || len([]rune(m["client_name"].(string))) != 100 ||
		m["scope"] != "tools:read" || m["logo_uri"] != nil || m["client_uri"] != "https://a/" {
		t.Errorf("cleaned metadata: %d %v", resp.StatusCode, m)
	}
}

func TestRegisterInitialAccessTokenAndRateLimit(t *testing.T) {
	env := newEnv(t, func(o *Options) {
		o.Registration.InitialAccessToken = "iat-" + testSecret
		o.Registration.Burst = 2
		o.Registration.RatePerMinute = 1
	})
	body := `{"redirect_uris":["https://a/cb"],"token_endpoint_auth_method":"none"}`
	if resp, m := env.register(body, nil); resp.StatusCode != 401 || m["error"] != "invalid_token" {
		t.Errorf("without the token: %d %v", resp.StatusCode, m)
	}
	if resp, _ := env.register(body, http.Header{"Authorization": {"Bearer wrong"}}); resp.StatusCode != 401 {
		t.Errorf("wrong token: %d", resp.StatusCode)
	}
	resp, m := env.register(body, http.Header{"Authorization": {"Bearer iat-" + testSecret}})
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("third registration from one address: %d %v", resp.StatusCode, m)
	}
	env2 := newEnv(t, func(o *Options) { o.Registration.InitialAccessToken = "iat-" + testSecret })
	if resp, m := env2.register(body, http.Header{"Authorization": {"Bearer iat-" + testSecret}}); resp.StatusCode != 201 {
		t.Errorf("with the token: %d %v", resp.StatusCode, m)
	}
}
