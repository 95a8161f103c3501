package mcpauth_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/mcpauth/mcpauth"
	"github.com/mcpauth/mcpauth/internal/mcptest"
)

// TestJWTEndToEnd connects go-sdk's client with a JWT in every mode, and
// refreshes the token within the session: same issuer and subject, other
// roles. The tool must see the refreshed token's roles, not the roles of the
// token that opened the session.
func TestJWTEndToEnd(t *testing.T) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := mcpauth.NewJWTIssuer(mcpauth.JWTIssuerOptions{Issuer: "https://as.example.com", Key: key, Audience: []string{"https://mcp.example.com/mcp"}})
	if err != nil {
		t.Fatal(err)
	}
	v, err := mcpauth.NewJWTVerifier(mcpauth.JWTVerifierOptions{Issuers: []mcpauth.TrustedIssuer{iss.TrustedIssuer()}})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	apiKey, _ := mcpauth.GenerateAPIKey()
	keys, err := mcpauth.NewAPIKeys(mcpauth.APIKey{Key: apiKey, Subject: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	mint := func(sub string, roles ...string) string {
		tok, err := iss.Mint(mcpauth.TokenClaims{Subject: sub, Roles: roles, Scopes: []string{"tools:call"}})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	opts := &mcpauth.RequireOptions{Logger: slog.New(slog.DiscardHandler)}
	for _, mode := range mcptest.Modes {
		t.Run(mode.Name, func(t *testing.T) {
			srv := mcptest.Serve(t, mcpauth.Require(opts, keys, v)(mode.Handler(newWhoamiServer())))
			headers := mcptest.NewHeaders("Authorization", "Bearer "+mint("alice", "admin"))
			cs, err := mcptest.Connect(t, mode, srv.URL, headers)
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			got, err := callWhoami(t, cs)
			if err != nil {
				t.Fatal(err)
			}
			userID := "jwt:https://as.example.com#alice"
			if got["subject"] != "alice" || got["method"] != "jwt" || fmt.Sprint(got["roles"]) != "[admin]" || fmt.Sprint(got["scopes"]) != "[tools:call]" || got["user_id"] != userID {
				t.Errorf("whoami = %v", got)
			}

			// The token is refreshed within the session, with fewer roles.
			headers.Set("Authorization", "Bearer "+mint("alice", "viewer"))
			got, err = callWhoami(t, cs)
			if err != nil {
				t.Fatalf("after refresh: %v", err)
			}
			if fmt.Sprint(got["roles"]) != "[viewer]" || got["user_id"] != userID {
				t.Errorf("after refresh, whoami = %v, want the new token's roles", got)
			}

			// Another subject's token never runs as alice: go-sdk refuses the
			// session to a different UserID, and without a session the call
			// runs as the new subject.
			headers.Set("Authorization", "Bearer "+mint("mallory", "admin"))
			got, err = callWhoami(t, cs)
			if mode.Stateless {
				if err != nil || got["subject"] != "mallory" {
					t.Errorf("stateless call as another subject: %v %v", got, err)
				}
			} else if err == nil && got["subject"] != "mallory" {
				t.Errorf("another subject's token ran as %v", got)
			}

			// A tampered token is refused at connect.
			bad := mint("alice", "admin")
			i := strings.LastIndexByte(bad, '.')
			sig, _ := base64.RawURLEncoding.DecodeString(bad[i+1:])
			sig[0] ^= 1
			bad = bad[:i+1] + base64.RawURLEncoding.EncodeToString(sig)
			if _, err := mcptest.Connect(t, mode, srv.URL, mcptest.NewHeaders("Authorization", "Bearer "+bad)); err == nil {
				t.Error("connected with a tampered token")
			}
			// The API key still works beside the JWT verifier.
			cs2, err := mcptest.Connect(t, mode, srv.URL, mcptest.NewHeaders("Authorization", "Bearer "+apiKey))
			if err != nil {
				t.Fatalf("API key: %v", err)
			}
			if got, err := callWhoami(t, cs2); err != nil || got["subject"] != "bob" {
				t.Errorf("API key whoami = %v, %v", got, err)
			}
		})
	}
}
