package mcpauth_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/mcpauth/mcpauth"
	"github.com/mcpauth/mcpauth/authserver"
)

// TestOAuthWithAuthServer checks that the resource side and mcpauth's own
// authorization server fit: the verifier discovers the server, and accepts
// a client-credentials token it issued for this resource, and refuses one
// it issued for another resource. Its metadata also passes the checks for
// introspection (an endpoint that takes client_secret_basic), though its
// JWTs are checked with its JWKS and never introspected.
func TestOAuthWithAuthServer(t *testing.T) {
	const secret = "machine-secret-0123456789abcdefghijklmnopqrstuvwxyz"
	srv := httptest.NewUnstartedServer(nil)
	srv.Start()
	t.Cleanup(srv.Close)
	resource, other := srv.URL+"/mcp", srv.URL+"/other"
	as, err := authserver.New(&authserver.Options{
		Issuer:    srv.URL,
		Resources: []string{resource, other},
		Scopes:    []string{"mcp:tools"},
		Clients: []authserver.Client{
			{ID: "machine", Secret: secret, Scopes: []string{"mcp:tools"}},
			{ID: "mcp-server", Secret: secret + "-rs", Introspect: true},
		},
		Store:  mcpauth.NewMemoryStore(),
		Secret: []byte(secret),
		Logger: quietLogger,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = as
	pr := newTestResource(t, resource, as.Issuer())
	v, err := mcpauth.NewOAuthVerifier(context.Background(), mcpauth.OAuthVerifierOptions{
		Issuer: as.Issuer(), Resource: pr, ClientID: "mcp-server", ClientSecret: secret + "-rs", Logger: quietLogger,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	token := func(res string) string {
		form := url.Values{"grant_type": {"client_credentials"}, "scope": {"mcp:tools"}, "resource": {res}}
		req, _ := http.NewRequest(http.MethodPost, v.AuthServerMetadata().TokenEndpoint, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("machine", secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct {
			AccessToken string `json:"access_token"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != 200 || body.AccessToken == "" {
			t.Fatalf("token endpoint: status %d, %v", resp.StatusCode, err)
		}
		return body.AccessToken
	}
	h := mcpauth.Require(&mcpauth.RequireOptions{Resource: pr, Logger: quietLogger}, v)(principalHandler)
	w := serveToken(h, token(resource))
	var got map[string]any
	_ = json.Unmarshal(w.Body.Bytes(), &got)
	if w.Code != 200 || got["method"] != "oauth" || got["subject"] != "machine" || got["issuer"] != as.Issuer() {
		t.Errorf("a token for this resource: status %d, %v", w.Code, got)
	}
	if w := serveToken(h, token(other)); w.Code != 401 || !strings.Contains(w.Header().Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("a token for another resource: status %d, %s", w.Code, w.Header().Get("WWW-Authenticate"))
	}
}
