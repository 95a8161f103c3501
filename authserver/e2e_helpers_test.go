package authserver

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"testing"

	"github.com/mcpauth/mcpauth"
	"github.com/mcpauth/mcpauth/internal/mcptest"
	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
)

type discardEvents struct{}

func (discardEvents) Record(context.Context, mcpauth.Event) {}

type whoamiOut struct {
	Subject  string   `json:"subject"`
	Method   string   `json:"method"`
	ClientID string   `json:"client_id"`
	Roles    []string `json:"roles"`
	Scopes   []string `json:"scopes"`
}

// rbacPolicy lets service and editor callers use whoami; only admins use
// drop-tables.
const rbacPolicy = `
roles:
  admin: [editor]
  editor: []
  service: []
rules:
  - {tool: whoami, roles: [service, editor]}
  - {tool: drop-tables, roles: [admin]}
`

// mountMCP serves, on env's server, an MCP endpoint at /mcp protected by
// the authorization server's verifier and the RBAC guard, and a minimal
// RFC 9728 document for it. It returns the endpoint's URL.
func (env *testEnv) mountMCP(mode mcptest.Mode) string {
	t := env.t
	t.Helper()
	policy, err := mcpauth.ParsePolicy([]byte(rbacPolicy))
	if err != nil {
		t.Fatal(err)
	}
	guard, err := mcpauth.NewGuard(policy, nil)
	if err != nil {
		t.Fatal(err)
	}
	server := mcp.NewServer(&mcp.Implementation{Name: "test", Version: "1"}, nil)
	server.AddReceivingMiddleware(guard.Middleware())
	mcp.AddTool(server, &mcp.Tool{Name: "whoami"}, func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, whoamiOut, error) {
		p := mcpauth.PrincipalFromRequest(req)
		if p == nil {
			return nil, whoamiOut{}, nil
		}
		return nil, whoamiOut{Subject: p.Subject, Method: string(p.Method), ClientID: p.ClientID, Roles: p.Roles, Scopes: p.Scopes}, nil
	})
	mcp.AddTool(server, &mcp.Tool{Name: "drop-tables"}, func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		return nil, nil, nil
	})
	verifier, err := env.as.Verifier()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { verifier.Close() })
	resource := env.srv.URL + testResourceDir
	prmURL := env.srv.URL + "/.well-known/oauth-protected-resource" + testResourceDir
	env.mux.Handle(testResourceDir, mcpauth.Require(&mcpauth.RequireOptions{ResourceMetadataURL: prmURL, Events: discardEvents{}}, verifier)(mode.Handler(server)))
	env.mux.HandleFunc("/.well-known/oauth-protected-resource"+testResourceDir, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(oauthex.ProtectedResourceMetadata{
			Resource:             resource,
			AuthorizationServers: []string{env.as.Issuer()},
			ScopesSupported:      []string{"tools:read"},
		})
	})
	return resource
}

// connect connects go-sdk's MCP client to endpoint through handler.
func connect(t *testing.T, mode mcptest.Mode, endpoint string, handler auth.OAuthHandler) (*mcp.ClientSession, error) {
	t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: "authserver-test", Version: "1"}, nil)
	transport := &mcp.StreamableClientTransport{Endpoint: endpoint, OAuthHandler: handler, DisableStandaloneSSE: true}
	cs, err := c.Connect(context.Background(), transport, &mcp.ClientSessionOptions{ProtocolVersion: mode.ProtocolVersion})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { cs.Close() })
	return cs, nil
}

// whoami calls the whoami tool and checks what it says about the caller,
// and that the guard shows the caller only the tools its roles allow.
func whoami(t *testing.T, cs *mcp.ClientSession, subject string, roles ...string) whoamiOut {
	t.Helper()
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "whoami"})
	if err != nil {
		t.Fatalf("whoami: %v", err)
	}
	if res.IsError {
		t.Fatalf("whoami: tool error %v", res.Content)
	}
	b, _ := json.Marshal(res.StructuredContent)
	var out whoamiOut
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if out.Subject != subject || out.Method != "oauth" || !slices.Equal(out.Roles, roles) {
		t.Errorf("whoami = %+v, want subject %s, roles %v", out, subject, roles)
	}
	names, _ := mcptest.ToolNames(t, cs)
	want := []string{"whoami"}
	if slices.Contains(roles, "admin") {
		want = []string{"drop-tables", "whoami"}
	}
	if !slices.Equal(names, want) {
		t.Errorf("tools/list = %v, want %v", names, want)
	}
	return out
}
