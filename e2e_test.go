package mcpauth_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/mcpauth/mcpauth"
	"github.com/mcpauth/mcpauth/internal/mcptest"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// whoami is the quickstart's tool: it reports the caller as the tool sees it.
type whoamiOut struct {
	Subject string   `json:"subject"`
	Method  string   `json:"method"`
	Roles   []string `json:"roles"`
	Scopes  []string `json:"scopes"`
	UserID  string   `json:"user_id"`
	// CtxSubject is what the tool's ctx says, to show the stale-context trap.
	CtxSubject string `json:"ctx_subject"`
}

func newWhoamiServer() *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "test", Version: "1"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "whoami"}, func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, whoamiOut, error) {
		p := mcpauth.PrincipalFromRequest(req)
		if p == nil {
			return nil, whoamiOut{}, nil
		}
		return nil, whoamiOut{Subject: p.Subject, Method: string(p.Method), Roles: p.Roles, Scopes: p.Scopes, UserID: req.Extra.TokenInfo.UserID}, nil
	})
	return s
}

func callWhoami(t *testing.T, cs *mcp.ClientSession) (map[string]any, error) {
	t.Helper()
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "whoami"})
	if err != nil {
		return nil, err
	}
	m, _ := res.StructuredContent.(map[string]any)
	return m, nil
}

func TestAPIKeyEndToEnd(t *testing.T) {
	for _, mode := range mcptest.Modes {
		t.Run(mode.Name, func(t *testing.T) {
			key, err := mcpauth.GenerateAPIKey()
			if err != nil {
				t.Fatal(err)
			}
			keys, err := mcpauth.NewAPIKeys(mcpauth.APIKey{Key: key, Subject: "alice", Roles: []string{"admin"}})
			if err != nil {
				t.Fatal(err)
			}
			srv := mcptest.Serve(t, mcpauth.Require(nil, keys)(mode.Handler(newWhoamiServer())))
			for _, hdr := range []struct{ name, value string }{{"X-API-Key", key}, {"Authorization", "Bearer " + key}, {"Authorization", "bearer   " + key}} {
				cs, err := mcptest.Connect(t, mode, srv.URL, mcptest.NewHeaders(hdr.name, hdr.value))
				if err != nil {
					t.Fatalf("%s: connect: %v", hdr.name, err)
				}
				got, err := callWhoami(t, cs)
				if err != nil {
					t.Fatal(err)
				}
				if got["subject"] != "alice" || got["method"] != "apikey" || got["user_id"] != "apikey:alice" {
					t.Errorf("%s: whoami = %v", hdr.name, got)
				}
			}
			if _, err := mcptest.Connect(t, mode, srv.URL, mcptest.NewHeaders("X-API-Key", key+"x")); err == nil {
				t.Error("connected with a wrong key")
			}
			if _, err := mcptest.Connect(t, mode, srv.URL, nil); err == nil {
				t.Error("connected with no key")
			}
		})
	}
}

var _ = http.MethodGet
