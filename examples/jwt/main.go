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
// -mint prints the token alone on stdout, and the client configurations
// that carry it on stderr. Give it the server's -addr (and -tls-cert and
// -tls-key) too, or the same -audience: the token's aud is the server's URL. -issuer, -audience and -jwks-url can also be set
// in the environment: JWT_ISSUER, JWT_AUDIENCE, JWKS_URL. -addr, -tls-cert
// and -tls-key say where and how to serve, as in every example.
//
// It stands alone: copy main.go and serve.go into a module of your own.
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
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		log.Fatal(err)
	}
}

type config struct {
	server                    serverFlags
	issuer, audience, jwksURL string
	secret                    []byte
	mint                      bool
	metrics                   *bool
	sub, roles, scopes        string
	ttl                       time.Duration
}

func parse(args []string, getenv func(string) string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("jwt", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.server.register(fs)
	fs.StringVar(&c.issuer, "issuer", or(getenv("JWT_ISSUER"), "mcp-auth-server"), "the iss of accepted tokens (env JWT_ISSUER)")
	fs.StringVar(&c.audience, "audience", getenv("JWT_AUDIENCE"), "the aud of accepted tokens (env JWT_AUDIENCE); default the URL clients use, http(s)://ADDR/mcp")
	fs.StringVar(&c.jwksURL, "jwks-url", getenv("JWKS_URL"), "the identity provider's JWKS URL (env JWKS_URL); or set JWT_SECRET")
	fs.BoolVar(&c.mint, "mint", false, "with JWT_SECRET: print a token for -sub, -roles and -scopes, and exit")
	fs.StringVar(&c.sub, "sub", "tester", "-mint: the token's subject")
	fs.StringVar(&c.roles, "roles", "", "-mint: comma-separated roles")
	fs.StringVar(&c.scopes, "scopes", "", "-mint: comma-separated scopes")
	fs.DurationVar(&c.ttl, "ttl", time.Hour, "-mint: how long the token is valid")
	c.metrics = registerMetrics(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if err := c.server.check(); err != nil {
		return nil, err
	}
	if c.audience == "" {
		c.audience = c.server.url()
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

// run is main with its surroundings passed in, so that a test can run it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	c, err := parse(args, getenv, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if c.mint {
		token, err := mint(c)
		if err != nil {
			return err
		}
		// stdout is the token alone, for TOKEN=$(go run ./examples/jwt -mint).
		fmt.Fprintln(stdout, token)
		fmt.Fprintf(stderr, "A token for %s, valid for %s. Clients send it like this:\n\n", c.sub, c.ttl)
		printClients(stderr, "jwt", c.server.url(), token)
		return nil
	}
	logger := log.New(stderr, "", log.LstdFlags)
	verifier, err := newVerifier(c)
	if err != nil {
		return err
	}
	defer verifier.Close()
	l, err := c.server.listen(logger)
	if err != nil {
		return err
	}
	ro, withMetrics, err := observe(*c.metrics, nil)
	if err != nil {
		return err
	}
	logger.Printf("MCP server on %s (accepting tokens from %s for %s)", l.url, c.issuer, c.audience)
	return serve(ctx, l, withMetrics(newHandler(verifier, ro)), logger)
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

func newHandler(auth mcpauth.Authenticator, ro *mcpauth.RequireOptions) http.Handler {
	server := mcp.NewServer(&mcp.Implementation{Name: "mcpauth-jwt", Version: "1.0.0"}, nil)
	mcp.AddTool(server, &mcp.Tool{Name: "hello", Description: "Greet someone"}, hello)
	mcp.AddTool(server, &mcp.Tool{Name: "whoami", Description: "Show who you are authenticated as"}, whoami)
	handler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil)
	mux := http.NewServeMux()
	mux.Handle("/mcp", mcpauth.Require(ro, auth)(handler))
	return mux
}

type helloIn struct {
	Name string `json:"name" jsonschema:"the name to greet"`
}

type helloOut struct {
	Greeting string `json:"greeting"`
}

func hello(_ context.Context, _ *mcp.CallToolRequest, in helloIn) (*mcp.CallToolResult, helloOut, error) {
	g := "Hello, " + in.Name + "!"
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: g}}}, helloOut{Greeting: g}, nil
}

// caller is the caller as the whoami tool shows it.
type caller struct {
	Subject string   `json:"subject"`
	Method  string   `json:"method"`
	Roles   []string `json:"roles"`
	Scopes  []string `json:"scopes"`
}

// whoami reports the caller. It reads the principal from the request, never
// from ctx, which in a session belongs to the session's first request: see
// mcpauth.PrincipalFromRequest.
func whoami(_ context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, caller, error) {
	p := mcpauth.PrincipalFromRequest(req)
	if p == nil {
		return nil, caller{}, errors.New("not authenticated")
	}
	// Empty lists, not null, for clients that iterate over them.
	c := caller{Subject: p.Subject, Method: string(p.Method), Roles: []string{}, Scopes: []string{}}
	c.Roles = append(c.Roles, p.Roles...)
	c.Scopes = append(c.Scopes, p.Scopes...)
	return nil, c, nil
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
