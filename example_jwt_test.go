package mcpauth_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log"
	"strings"

	"github.com/mcpauth/mcpauth"
)

// The tutorial's create_token / verify_token round trip, with HS256 and a
// shared secret (in production, read it from JWT_SECRET).
func ExampleJWTIssuer() {
	secret := []byte("an example secret of at least 32 bytes, from JWT_SECRET")

	issuer, err := mcpauth.NewJWTIssuer(mcpauth.JWTIssuerOptions{
		Issuer:   "mcp-auth-server",
		Key:      secret,
		Audience: []string{"https://mcp.example.com/mcp"},
	})
	if err != nil {
		log.Fatal(err)
	}
	token, err := issuer.Mint(mcpauth.TokenClaims{
		Subject: "client-42",
		Roles:   []string{"editor"},
		Scopes:  []string{"read-data", "write-data"},
	})
	if err != nil {
		log.Fatal(err)
	}

	verifier, err := mcpauth.NewJWTVerifier(mcpauth.JWTVerifierOptions{
		Issuers: []mcpauth.TrustedIssuer{{
			Issuer:    "mcp-auth-server",
			Audiences: []string{"https://mcp.example.com/mcp"},
			Secret:    secret,
			// JWTIssuer types its tokens at+jwt (RFC 9068), so no other
			// kind of JWT signed with this secret passes as an access token.
			RequireAccessTokenType: true,
		}},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer verifier.Close()

	p, err := verifier.Verify(context.Background(), token)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(p.UserID(), p.Roles, p.Scopes)

	// A token whose claims were changed after signing is refused.
	parts := strings.Split(token, ".")
	claims, _ := base64.RawURLEncoding.DecodeString(parts[1])
	claims = bytes.Replace(claims, []byte(`"editor"`), []byte(`"admin"`), 1)
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(claims) + "." + parts[2]
	_, err = verifier.Verify(context.Background(), tampered)
	fmt.Println(errors.Is(err, mcpauth.ErrInvalidCredentials))
	// Output:
	// jwt:mcp-auth-server#client-42 [editor] [read-data write-data]
	// true
}

// Accepting the access tokens of an identity provider by its JWKS URL. The
// verifier is an Authenticator: give it to Require, beside API keys if you
// like.
func ExampleNewJWTVerifier_jwks() {
	verifier, err := mcpauth.NewJWTVerifier(mcpauth.JWTVerifierOptions{
		Issuers: []mcpauth.TrustedIssuer{{
			Issuer:     "https://keycloak.example.com/realms/mcp",
			Audiences:  []string{"https://mcp.example.com/mcp"},
			JWKSURL:    "https://keycloak.example.com/realms/mcp/protocol/openid-connect/certs",
			Method:     mcpauth.MethodOAuth,
			RoleClaims: []string{"realm_access.roles"},
		}},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer verifier.Close()
	_ = mcpauth.Require(nil, verifier)
}
