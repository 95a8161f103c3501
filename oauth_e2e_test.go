package mcpauth_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpauth/mcpauth"
	"github.com/mcpauth/mcpauth/internal/mcptest"
	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
)

// oauthServer is an MCP server protected by an OAuthVerifier of a, with its
// metadata served beside it, on a loopback test server.
type oauthServer struct {
	endpoint string
	pr       *mcpauth.ProtectedResource
	v        *mcpauth.OAuthVerifier
}

// newOAuthServer serves server in mode behind Require with the resource's
// challenges and, when guard is set, its HTTP scope step-up.
func newOAuthServer(t *testing.T, a *fakeAS, mode mcptest.Mode, server *mcp.Server, guard *mcpauth.Guard) *oauthServer {
	t.Helper()
	mux := http.NewServeMux()
	srv := mcptest.Serve(t, mux)
	s := &oauthServer{endpoint: srv.URL + "/mcp"}
	s.pr = newTestResource(t, s.endpoint, a.issuer)
	s.v = newTestOAuthVerifier(t, a, s.pr, nil)
	// The metadata is public: it is mounted beside Require, not behind it.
	mux.Handle("/.well-known/oauth-protected-resource/", s.pr)
	mux.Handle("/.well-known/oauth-protected-resource", s.pr)
	// Guard.RequireScopes reads ResourceMetadataURL (not yet Resource), so
	// both are set, to the same URL.
	opts := &mcpauth.RequireOptions{Resource: s.pr, ResourceMetadataURL: s.pr.MetadataURL(), Logger: quietLogger}
	var h http.Handler = mode.Handler(server)
	if guard != nil {
		h = guard.RequireScopes(opts)(h)
	}
	mux.Handle("/mcp", mcpauth.Require(opts, s.v)(h))
	return s
}

// TestOAuthEndToEnd discovers the server as go-sdk's OAuth client does,
// from the 401 challenge to the authorization server's metadata, then calls
// a tool with a JWT and with an opaque access token, in every mode; a token
// for another resource is refused.
func TestOAuthEndToEnd(t *testing.T) {
	ctx := context.Background()
	for _, mode := range mcptest.Modes {
		t.Run(mode.Name, func(t *testing.T) {
			a := newFakeAS(t, "/tenant1")
			s := newOAuthServer(t, a, mode, newWhoamiServer(), nil)

			// The challenge of a request without a token.
			resp, err := http.Post(s.endpoint, "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401", resp.StatusCode)
			}
			cs, err := oauthex.ParseWWWAuthenticate(resp.Header.Values("WWW-Authenticate"))
			if err != nil || len(cs) != 1 {
				t.Fatalf("challenges %v, %v", cs, err)
			}
			if got := cs[0].Params["scope"]; got != "mcp:tools" {
				t.Errorf("scope hint %q, want mcp:tools", got)
			}
			// go-sdk's client requires the document's resource to be, byte
			// for byte, the URL it connects to, at the challenge's URL and at
			// the path-inserted one it probes otherwise.
			for _, u := range []string{cs[0].Params["resource_metadata"], strings.Replace(s.endpoint, "/mcp", "/.well-known/oauth-protected-resource/mcp", 1)} {
				prm, err := oauthex.GetProtectedResourceMetadata(ctx, u, s.endpoint, nil)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(prm.AuthorizationServers, []string{a.issuer}) {
					t.Errorf("authorization_servers %q", prm.AuthorizationServers)
				}
			}
			asm, err := auth.GetAuthServerMetadata(ctx, a.issuer, nil)
			if err != nil || asm == nil || asm.Issuer != a.issuer {
				t.Fatalf("go-sdk's discovery of the authorization server: %+v, %v", asm, err)
			}

			opaque := a.opaque(a.activeClaims(time.Now(), map[string]any{"aud": s.endpoint}))
			for name, token := range map[string]string{"JWT": a.mint(s.endpoint), "opaque": opaque} {
				session, err := mcptest.Connect(t, mode, s.endpoint, mcptest.NewHeaders("Authorization", "Bearer "+token))
				if err != nil {
					t.Fatalf("%s: connect: %v", name, err)
				}
				got, err := callWhoami(t, session)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if got["subject"] != "alice" || got["method"] != "oauth" || got["user_id"] != "oauth:"+a.issuer+"#alice" {
					t.Errorf("%s: whoami = %v", name, got)
				}
			}
			if _, err := mcptest.Connect(t, mode, s.endpoint, mcptest.NewHeaders("Authorization", "Bearer "+a.mint("https://other.example.com/mcp"))); err == nil {
				t.Error("connected with a token for another resource")
			}
			// No token passthrough: only the introspection endpoint ever saw
			// a token.
			for _, r := range a.seen() {
				if r.path != "/introspect" && (r.auth != "" || r.body != "") {
					t.Errorf("the authorization server's %s received %q, %q", r.path, r.auth, r.body)
				}
			}
		})
	}
}

// TestOAuthEndToEndAuthorizationCode runs go-sdk's own OAuth client
// (auth.AuthorizationCodeHandler) against the server: it follows the 401
// challenge, asks for the hinted scope and this resource, and then, for a
// tool whose rule needs more scopes, steps up on the 403 insufficient_scope
// challenge, in one round, to all the scopes the tool needs.
func TestOAuthEndToEndAuthorizationCode(t *testing.T) {
	policy, err := mcpauth.ParsePolicy([]byte(`
rules:
  - {tool: whoami, scopes: ["mcp:tools"]}
  - {tool: write, scopes: ["mcp:tools", "mcp:write", "mcp:files"]}
`))
	if err != nil {
		t.Fatal(err)
	}
	guard, err := mcpauth.NewGuard(policy, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range mcptest.Modes {
		t.Run(mode.Name, func(t *testing.T) {
			a := newFakeAS(t, "/tenant1")
			server := newWhoamiServer()
			mcp.AddTool(server, &mcp.Tool{Name: "write"}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, struct{}, error) {
				return nil, struct{}{}, nil
			})
			server.AddReceivingMiddleware(guard.Middleware())
			s := newOAuthServer(t, a, mode, server, guard)

			var mu sync.Mutex
			var asked []string // the scope of each authorization request
			h, err := auth.NewAuthorizationCodeHandler(&auth.AuthorizationCodeHandlerConfig{
				PreregisteredClient: &oauthex.ClientCredentials{ClientID: "mcp-client", ClientSecretAuth: &oauthex.ClientSecretAuth{ClientSecret: "client-secret"}},
				RedirectURL:         "http://127.0.0.1/callback",
				AuthorizationCodeFetcher: func(_ context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
					code, state, q := a.fetchCode(args.URL)
					if q.Get("resource") != s.endpoint {
						t.Errorf("resource %q, want %q", q.Get("resource"), s.endpoint)
					}
					mu.Lock()
					asked = append(asked, q.Get("scope"))
					mu.Unlock()
					return &auth.AuthorizationResult{Code: code, State: state}, nil
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			c := mcp.NewClient(&mcp.Implementation{Name: "oauth-client", Version: "1"}, nil)
			session, err := c.Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: s.endpoint, OAuthHandler: h, DisableStandaloneSSE: true}, &mcp.ClientSessionOptions{ProtocolVersion: mode.ProtocolVersion})
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			defer session.Close()
			got, err := callWhoami(t, session)
			if err != nil {
				t.Fatal(err)
			}
			if got["subject"] != "alice" || got["method"] != "oauth" {
				t.Errorf("whoami = %v", got)
			}
			res, err := session.CallTool(context.Background(), &mcp.CallToolParams{Name: "write"})
			if err != nil || res.IsError {
				t.Fatalf("write after step-up: %v, %+v", err, res)
			}
			mu.Lock()
			defer mu.Unlock()
			// go-sdk unites the granted and the challenged scopes in no
			// particular order.
			for i, a := range asked {
				f := strings.Fields(a)
				slices.Sort(f)
				asked[i] = strings.Join(f, " ")
			}
			if want := []string{"mcp:tools", "mcp:files mcp:tools mcp:write"}; !slices.Equal(asked, want) {
				t.Errorf("authorization requests asked for %q, want %q", asked, want)
			}
		})
	}
}
