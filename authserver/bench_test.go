package authserver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/mcpauth/mcpauth"
	"github.com/mcpauth/mcpauth/internal/benchcmp"
)

func benchServer(b *testing.B) *Server {
	b.Helper()
	s, err := New(&Options{
		Issuer:    "https://as.example",
		Resources: []string{"https://mcp.example/mcp"},
		Scopes:    []string{"tools:read", "tools:write"},
		Clients: []Client{
			{ID: "machine", Secret: testSecret, Roles: []string{"service"}},
			{ID: "app", RedirectURIs: []string{"http://127.0.0.1/callback"}},
		},
		Store:  mcpauth.NewMemoryStore(),
		Secret: []byte(testSecret),
		Events: discardEvents{},
	})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// baseline is NewJWTIssuer.Mint alone, with an ES256 key and the claims
// the token endpoint puts in a token.
func baseline(b *testing.B) func() {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	iss, err := mcpauth.NewJWTIssuer(mcpauth.JWTIssuerOptions{Issuer: "https://as.example", Key: key, TTL: DefaultAccessTokenTTL})
	if err != nil {
		b.Fatal(err)
	}
	claims := mcpauth.TokenClaims{Subject: "machine", ClientID: "machine", Audience: []string{"https://mcp.example/mcp"}, Scopes: []string{"tools:read"}, Roles: []string{"service"}}
	return func() {
		if _, err := iss.Mint(claims); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTokenClientCredentials is a client_credentials request to the
// token endpoint (client authentication, scopes, resource, minting, the
// JSON response) beside Mint alone.
func BenchmarkTokenClientCredentials(b *testing.B) {
	s := benchServer(b)
	body := url.Values{"grant_type": {"client_credentials"}, "client_id": {"machine"}, "client_secret": {testSecret}, "scope": {"tools:read"}}.Encode()
	w := benchcmp.NewDiscardWriter()
	benchcmp.Interleave(b, 16, func() {
		req := httptest.NewRequest("POST", "/token", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w.Reset()
		s.ServeHTTP(w, req)
	}, baseline(b))
}

// BenchmarkTokenRefresh is a refresh_token request (rotation: take the
// token, record it as used, store the new one, save the family) on the
// in-memory store, beside Mint alone.
func BenchmarkTokenRefresh(b *testing.B) {
	s := benchServer(b)
	req := httptest.NewRequest("POST", "/token", nil)
	at, e := s.mint(req, mcpauth.TokenClaims{Subject: "alice", ClientID: "app", Audience: []string{"https://mcp.example/mcp"}})
	if e != nil {
		b.Fatal(e)
	}
	token, _, e := s.newFamily(req, &grantRecord{ClientID: "app", Subject: "alice", Scopes: []string{"tools:read"}, Resource: "https://mcp.example/mcp"}, at)
	if e != nil {
		b.Fatal(e)
	}
	benchcmp.Interleave(b, 16, func() {
		body := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token}, "client_id": {"app"}}.Encode()
		req := httptest.NewRequest("POST", "/token", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		var m struct {
			RefreshToken string `json:"refresh_token"`
		}
		if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &m) != nil {
			b.Fatalf("refresh: %d %s", rec.Code, rec.Body)
		}
		token = m.RefreshToken
	}, baseline(b))
}
