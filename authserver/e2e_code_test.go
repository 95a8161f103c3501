package authserver

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mcpauth/mcpauth/internal/mcptest"
	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
)

// fetcher is go-sdk's AuthorizationCodeFetcher played by a Go HTTP client
// that logs in as user and approves; it counts the authorizations.
func (env *testEnv) fetcher(user string, count *atomic.Int32) auth.AuthorizationCodeFetcher {
	return func(ctx context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
		count.Add(1)
		back := env.authorize(args.URL, user, "approve")
		q := back.Query()
		return &auth.AuthorizationResult{Code: q.Get("code"), State: q.Get("state"), Iss: q.Get("iss")}, nil
	}
}

// go-sdk's MCP client completes the authorization code flow with a
// pre-registered public client and calls a tool as the user.
func TestMCPAuthorizationCodePreregistered(t *testing.T) {
	for _, mode := range mcptest.Modes {
		t.Run(mode.Name, func(t *testing.T) {
			env := newEnv(t, nil)
			endpoint := env.mountMCP(mode)
			var n atomic.Int32
			h, err := auth.NewAuthorizationCodeHandler(&auth.AuthorizationCodeHandlerConfig{
				PreregisteredClient:      &oauthex.ClientCredentials{ClientID: "app", Issuer: env.as.Issuer()},
				RedirectURL:              "http://127.0.0.1:38111/callback",
				AuthorizationCodeFetcher: env.fetcher("alice", &n),
			})
			if err != nil {
				t.Fatal(err)
			}
			cs, err := connect(t, mode, endpoint, h)
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			out := whoami(t, cs, "alice", "editor")
			if out.ClientID != "app" || n.Load() != 1 {
				t.Errorf("whoami %+v after %d authorizations", out, n.Load())
			}
		})
	}
}

// go-sdk's client registers itself (RFC 7591) and completes the flow.
func TestMCPDynamicRegistration(t *testing.T) {
	for _, mode := range mcptest.Modes {
		t.Run(mode.Name, func(t *testing.T) {
			env := newEnv(t, nil)
			endpoint := env.mountMCP(mode)
			var n atomic.Int32
			h, err := auth.NewAuthorizationCodeHandler(&auth.AuthorizationCodeHandlerConfig{
				DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{Metadata: &oauthex.ClientRegistrationMetadata{
					ClientName:              "go-sdk test",
					RedirectURIs:            []string{"http://127.0.0.1:38113/callback"},
					TokenEndpointAuthMethod: "none",
					GrantTypes:              []string{"authorization_code", "refresh_token"},
				}},
				AuthorizationCodeFetcher: env.fetcher("alice", &n),
			})
			if err != nil {
				t.Fatal(err)
			}
			cs, err := connect(t, mode, endpoint, h)
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			out := whoami(t, cs, "alice", "editor")
			if !strings.HasPrefix(out.ClientID, dynamicClientPrefix) || len(env.events.find(EventClientRegistered, "")) != 1 {
				t.Errorf("client %q", out.ClientID)
			}
		})
	}
}
