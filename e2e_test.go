package mcpauth_test

import (
	"context"
	"net/http"
	"testing"

	"log/slog"
	"strings"

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
	mcpauth.ForEachBridge(t, func(t *testing.T) {
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
				srv := mcptest.Serve(t, mcpauth.Require(quiet, keys)(mode.Handler(newWhoamiServer())))
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
	})
}

var quiet = &mcpauth.RequireOptions{Logger: slog.New(slog.DiscardHandler)}

// TestPrincipalIsTheCurrentRequests proves that a tool sees the credential of
// the request that carried the call, not the one that opened the session: the
// session is opened with an admin key and then used with a viewer key of the
// same subject (a rotation, or a downgrade).
func TestPrincipalIsTheCurrentRequests(t *testing.T) {
	mcpauth.ForEachBridge(t, func(t *testing.T) {
		for _, mode := range mcptest.Modes {
			t.Run(mode.Name, func(t *testing.T) {
				admin, viewer, other := newKey(t), newKey(t), newKey(t)
				keys, err := mcpauth.NewAPIKeys(
					mcpauth.APIKey{Key: admin, Subject: "alice", Roles: []string{"admin"}},
					mcpauth.APIKey{Key: viewer, Subject: "alice", Roles: []string{"viewer"}},
					mcpauth.APIKey{Key: other, Subject: "mallory", Roles: []string{"admin"}},
				)
				if err != nil {
					t.Fatal(err)
				}
				srv := mcptest.Serve(t, mcpauth.Require(quiet, keys)(mode.Handler(newWhoamiServer())))
				headers := mcptest.NewHeaders("X-API-Key", admin)
				cs, err := mcptest.Connect(t, mode, srv.URL, headers)
				if err != nil {
					t.Fatal(err)
				}
				got, err := callWhoami(t, cs)
				if err != nil || !hasRole(got, "admin") {
					t.Fatalf("first call: %v, %v", got, err)
				}
				headers.Set("Authorization", "Bearer "+viewer)
				got, err = callWhoami(t, cs)
				if err != nil {
					t.Fatal(err)
				}
				if !hasRole(got, "viewer") || hasRole(got, "admin") || got["subject"] != "alice" {
					t.Fatalf("after the switch to the viewer key the tool sees %v", got)
				}
				// Another subject cannot use alice's session: go-sdk refuses it
				// because UserID differs. A stateless server has no session to
				// hijack, and the call is simply mallory's own.
				headers.Set("X-API-Key", other)
				got, err = callWhoami(t, cs)
				if !mode.Stateless {
					if err == nil {
						t.Fatalf("another subject used alice's session: %v", got)
					}
				} else if err != nil || got["subject"] != "mallory" {
					t.Fatalf("sessionless call with mallory's key: %v, %v", got, err)
				}
			})
		}
	})
}

func newKey(t *testing.T) string {
	t.Helper()
	k, err := mcpauth.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func hasRole(whoami map[string]any, role string) bool {
	roles, _ := whoami["roles"].([]any)
	for _, r := range roles {
		if r == role {
			return true
		}
	}
	return false
}

// TestRefusedBeforeTheServer checks the raw HTTP answer to an MCP request
// without valid credentials: go-sdk never sees it.
func TestRefusedBeforeTheServer(t *testing.T) {
	keys, err := mcpauth.NewAPIKeys(mcpauth.APIKey{Key: newKey(t)})
	if err != nil {
		t.Fatal(err)
	}
	srv := mcptest.Serve(t, mcpauth.Require(quiet, keys)(mcptest.Modes[0].Handler(newWhoamiServer())))
	body := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`
	for _, value := range []string{"", newKey(t), "Bearer", strings.Repeat("x", 64<<10)} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if value != "" {
			req.Header.Set("X-API-Key", value)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("X-API-Key %.10q: status %d, challenge %q", value, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}
}
