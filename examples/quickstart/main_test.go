package main

import (
	"context"
	"log/slog"
	"reflect"
	"testing"

	"github.com/mcpauth/mcpauth"
	"github.com/mcpauth/mcpauth/internal/mcptest"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func TestQuickstart(t *testing.T) {
	slog.SetDefault(slog.New(slog.DiscardHandler))
	key, err := mcpauth.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	configured, generated, err := newHandler(" " + key + ":alice:admin|viewer\n")
	if err != nil || generated != "" {
		t.Fatalf("newHandler: %q, %v", generated, err)
	}
	fresh, generated, err := newHandler("")
	if err != nil || generated == "" {
		t.Fatalf("newHandler with no keys: %q, %v", generated, err)
	}
	if _, _, err := newHandler("short"); err == nil {
		t.Fatal("newHandler accepted a malformed MCP_API_KEYS")
	}

	tests := []struct {
		name   string
		srvURL string
		header string
		value  string
		want   map[string]any
	}{
		{"configured key", mcptest.Serve(t, configured).URL, "X-API-Key", key,
			map[string]any{"subject": "alice", "method": "apikey", "roles": []any{"admin", "viewer"}, "scopes": []any{}}},
		{"generated key", mcptest.Serve(t, fresh).URL, "Authorization", "Bearer " + generated,
			map[string]any{"subject": "quickstart", "method": "apikey", "roles": []any{}, "scopes": []any{}}},
	}
	for _, tt := range tests {
		for _, mode := range mcptest.Modes[:2] {
			t.Run(tt.name+"/"+mode.Name, func(t *testing.T) {
				cs, err := mcptest.Connect(t, mode, tt.srvURL+"/mcp", mcptest.NewHeaders(tt.header, tt.value))
				if err != nil {
					t.Fatal(err)
				}
				res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "hello", Arguments: map[string]any{"name": "Ada"}})
				if err != nil || res.IsError || res.Content[0].(*mcp.TextContent).Text != "Hello, Ada!" {
					t.Fatalf("hello: %+v, %v", res, err)
				}
				res, err = cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "whoami"})
				if err != nil || res.IsError {
					t.Fatalf("whoami: %+v, %v", res, err)
				}
				got := res.StructuredContent.(map[string]any)
				for k, w := range tt.want {
					if g := got[k]; !reflect.DeepEqual(g, w) {
						t.Errorf("whoami %s = %v, want %v", k, g, w)
					}
				}
				if len(got) != len(tt.want) {
					t.Errorf("whoami = %v, want exactly the fields %v", got, tt.want)
				}
			})
		}
		if _, err := mcptest.Connect(t, mcptest.Modes[0], tt.srvURL+"/mcp", nil); err == nil {
			t.Errorf("%s: connected without a key", tt.name)
		}
	}
}
