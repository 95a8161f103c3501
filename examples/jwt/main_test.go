package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mcpauth/mcpauth"
	"github.com/mcpauth/mcpauth/internal/mcptest"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

const secret = "a test secret that is at least 32 bytes long"

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// TestMintAndServe is the tutorial's round trip: -mint prints a token, the
// server accepts it and the tools see its subject and roles.
func TestMintAndServe(t *testing.T) {
	slog.SetDefault(slog.New(slog.DiscardHandler))
	getenv := env(map[string]string{"JWT_SECRET": secret})
	var out bytes.Buffer
	if err := run([]string{"-mint", "-sub", "alice", "-roles", "admin,viewer", "-scopes", "tools:call"}, getenv, &out); err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(out.String())

	c, err := parse(nil, getenv)
	if err != nil {
		t.Fatal(err)
	}
	v, err := newVerifier(c)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	for _, mode := range mcptest.Modes {
		t.Run(mode.Name, func(t *testing.T) {
			srv := mcptest.Serve(t, newHandler(v))
			cs, err := mcptest.Connect(t, mode, srv.URL+"/mcp", mcptest.NewHeaders("Authorization", "Bearer "+token))
			if err != nil {
				t.Fatal(err)
			}
			res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "hello", Arguments: map[string]any{"name": "Ada"}})
			if err != nil || res.Content[0].(*mcp.TextContent).Text != "Hello, Ada!" {
				t.Fatalf("hello: %v %v", res, err)
			}
			res, err = cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "whoami"})
			if err != nil {
				t.Fatal(err)
			}
			got := fmt.Sprint(res.StructuredContent)
			if got != "map[method:jwt roles:[admin viewer] scopes:[tools:call] subject:alice]" {
				t.Errorf("whoami = %s", got)
			}
		})
	}
	// Without a token, 401 with a Bearer challenge.
	srv := httptest.NewServer(newHandler(v))
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/mcp", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("no token: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
	}{
		{nil, nil},
		{[]string{"-jwks-url", "https://idp.example.com/jwks"}, map[string]string{"JWT_SECRET": secret}},
		{[]string{"-mint", "-jwks-url", "https://idp.example.com/jwks"}, nil},
	} {
		if _, err := parse(tc.args, env(tc.env)); err == nil {
			t.Errorf("parse(%q, %v) accepted it", tc.args, tc.env)
		}
	}
	c, err := parse(nil, env(map[string]string{"JWT_SECRET": "short"}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newVerifier(c); err == nil {
		t.Error("a short JWT_SECRET was accepted")
	}
	var _ mcpauth.Authenticator = (*mcpauth.JWTVerifier)(nil)
}
