package authserver

import (
	"testing"

	"github.com/mcpauth/mcpauth/internal/mcptest"
	"github.com/modelcontextprotocol/go-sdk/auth/extauth"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
)

// go-sdk's client credentials handler discovers the server from the MCP
// endpoint's challenge and gets a token for the machine client, whose roles
// the guard then applies.
func TestMCPClientCredentials(t *testing.T) {
	for _, mode := range mcptest.Modes {
		t.Run(mode.Name, func(t *testing.T) {
			env := newEnv(t, nil)
			endpoint := env.mountMCP(mode)
			h, err := extauth.NewClientCredentialsHandler(&extauth.ClientCredentialsHandlerConfig{
				Credentials: &oauthex.ClientCredentials{ClientID: "machine", ClientSecretAuth: &oauthex.ClientSecretAuth{ClientSecret: testSecret}, Issuer: env.as.Issuer()},
			})
			if err != nil {
				t.Fatal(err)
			}
			cs, err := connect(t, mode, endpoint, h)
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			out := whoami(t, cs, "machine", "service")
			if out.ClientID != "machine" || len(out.Scopes) != 1 || out.Scopes[0] != "tools:read" {
				t.Errorf("whoami %+v", out)
			}
			// A wrong secret gets nowhere.
			bad, _ := extauth.NewClientCredentialsHandler(&extauth.ClientCredentialsHandlerConfig{
				Credentials: &oauthex.ClientCredentials{ClientID: "machine", ClientSecretAuth: &oauthex.ClientSecretAuth{ClientSecret: testSecret + "x"}},
			})
			if _, err := connect(t, mode, endpoint, bad); err == nil {
				t.Error("connected with a wrong secret")
			}
		})
	}
}
