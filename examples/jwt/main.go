// Command jwt serves an MCP server that accepts JWT bearer tokens.
//
// With tokens from an identity provider (Keycloak, Auth0, Okta, Entra ID,
// Ory Hydra), point it at the provider's JWKS:
//
//	go run ./examples/jwt -issuer https://idp.example.com/ \
//		-audience http://127.0.0.1:8080/mcp -jwks-url https://idp.example.com/.well-known/jwks.json
//
// With a shared secret, as in the tutorial (HS256), set JWT_SECRET (at least
// 32 bytes), mint a test token and serve:
//
//	export JWT_SECRET=$(openssl rand -base64 32)
//	TOKEN=$(go run ./examples/jwt -mint -sub alice -roles admin)
//	go run ./examples/jwt
//
// Every flag but -mint and its companions can also be set in the
// environment: JWT_ISSUER, JWT_AUDIENCE, JWKS_URL.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/mcpauth/mcpauth"
	"github.com/mcpauth/mcpauth/examples/internal/demo"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func main() {
	if err := run(os.Args[1:], os.Getenv, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

type config struct {
	addr, issuer, audience, jwksURL string
	secret                          []byte
	mint                            bool
	sub, roles, scopes              string
	ttl                             time.Duration
}

func parse(args []string, getenv func(string) string) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("jwt", flag.ContinueOnError)
	fs.StringVar(&c.addr, "addr", "127.0.0.1:8080", "address to listen on")
	fs.StringVar(&c.issuer, "issuer", or(getenv("JWT_ISSUER"), "mcp-auth-server"), "the iss of accepted tokens (env JWT_ISSUER)")
	fs.StringVar(&c.audience, "audience", getenv("JWT_AUDIENCE"), "the aud of accepted tokens (env JWT_AUDIENCE); default http://ADDR/mcp")
	fs.StringVar(&c.jwksURL, "jwks-url", getenv("JWKS_URL"), "the identity provider's JWKS URL (env JWKS_URL); or set JWT_SECRET")
	fs.BoolVar(&c.mint, "mint", false, "with JWT_SECRET: print a token for -sub, -roles and -scopes, and exit")
	fs.StringVar(&c.sub, "sub", "tester", "-mint: the token's subject")
	fs.StringVar(&c.roles, "roles", "", "-mint: comma-separated roles")
	fs.StringVar(&c.scopes, "scopes", "", "-mint: comma-separated scopes")
	fs.DurationVar(&c.ttl, "ttl", time.Hour, "-mint: how long the token is valid")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if c.audience == "" {
		c.audience = "http://" + c.addr + "/mcp"
	}
	if s := getenv("JWT_SECRET"); s != "" {
		c.secret = []byte(strings.TrimSpace(s))
	}
	switch {
	case c.secret != nil && c.jwksURL != "":
		return nil, errors.New("set -jwks-url or JWT_SECRET, not both")
	case c.secret == nil && c.jwksURL == "":
		return nil, errors.New("set -jwks-url (tokens from an identity provider) or JWT_SECRET (HS256)")
	case c.mint && c.secret == nil:
		return nil, errors.New("-mint needs JWT_SECRET")
	}
	return c, nil
}

func run(args []string, getenv func(string) string, stdout io.Writer) error {
	c, err := parse(args, getenv)
	if err != nil {
		return err
	}
	if c.mint {
		token, err := mint(c)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, token)
		return nil
	}
	verifier, err := newVerifier(c)
	if err != nil {
		return err
	}
	defer verifier.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Printf("MCP server on http://%s/mcp, accepting tokens from %s for %s", c.addr, c.issuer, c.audience)
	return demo.ListenAndServe(ctx, c.addr, newHandler(verifier))
}

// mint is the tutorial's create_token.
func mint(c *config) (string, error) {
	issuer, err := mcpauth.NewJWTIssuer(mcpauth.JWTIssuerOptions{
		Issuer:   c.issuer,
		Key:      c.secret,
		Audience: []string{c.audience},
		TTL:      c.ttl,
	})
	if err != nil {
		return "", err
	}
	return issuer.Mint(mcpauth.TokenClaims{Subject: c.sub, Roles: list(c.roles), Scopes: list(c.scopes)})
}

// newVerifier is the tutorial's verify_token, for one issuer.
func newVerifier(c *config) (*mcpauth.JWTVerifier, error) {
	return mcpauth.NewJWTVerifier(mcpauth.JWTVerifierOptions{
		Issuers: []mcpauth.TrustedIssuer{{
			Issuer:    c.issuer,
			Audiences: []string{c.audience},
			Secret:    c.secret,
			JWKSURL:   c.jwksURL,
		}},
		// Tolerate a little clock skew between this host and the issuer.
		Leeway: 30 * time.Second,
	})
}

func newHandler(auth mcpauth.Authenticator) http.Handler {
	server := demo.NewServer("mcpauth-jwt")
	handler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil)
	mux := http.NewServeMux()
	mux.Handle("/mcp", mcpauth.Require(nil, auth)(handler))
	return mux
}

func list(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
