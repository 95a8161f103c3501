// Command quickstart serves an MCP server protected by API keys.
//
//	go run ./examples/quickstart
//
// It reads keys from MCP_API_KEYS (KEY, KEY:SUBJECT or KEY:SUBJECT:ROLE|ROLE,
// comma-separated). With none, it generates one, prints it once with a client
// configuration to paste, and serves.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/mcpauth/mcpauth"
	"github.com/mcpauth/mcpauth/examples/internal/demo"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	flag.Parse()
	if err := run(*addr); err != nil {
		log.Fatal(err)
	}
}

func run(addr string) error {
	mux, generated, err := newHandler(os.Getenv(mcpauth.EnvAPIKeys))
	if err != nil {
		return err
	}
	if generated != "" {
		printClientConfig(addr, generated)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Printf("MCP server on http://%s/mcp", addr)
	return demo.ListenAndServe(ctx, addr, mux)
}

// newHandler returns the server's handler for the keys in env (the
// MCP_API_KEYS format). With no keys it generates one and returns it.
func newHandler(env string) (_ http.Handler, generated string, _ error) {
	keys, err := mcpauth.ParseAPIKeys(env)
	if err != nil {
		return nil, "", err
	}
	if len(keys) == 0 {
		if generated, err = mcpauth.GenerateAPIKey(); err != nil {
			return nil, "", err
		}
		keys = append(keys, mcpauth.APIKey{Key: generated, Subject: "quickstart"})
	}
	auth, err := mcpauth.NewAPIKeys(keys...)
	if err != nil {
		return nil, "", err
	}

	server := demo.NewServer("mcpauth-quickstart")
	handler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil)
	mux := http.NewServeMux()
	mux.Handle("/mcp", mcpauth.Require(nil, auth)(handler))
	return mux, generated, nil
}

// printClientConfig prints a generated key once, in the configuration that
// Claude Desktop and VS Code read.
func printClientConfig(addr, key string) {
	url := "http://" + addr + "/mcp"
	claude := map[string]any{"mcpServers": map[string]any{"quickstart": map[string]any{
		"url": url, "headers": map[string]string{"Authorization": "Bearer " + key},
	}}}
	vscode := map[string]any{"servers": map[string]any{"quickstart": map[string]any{
		"type": "http", "url": url, "headers": map[string]string{"X-API-Key": key},
	}}}
	c, _ := json.MarshalIndent(claude, "", "  ")
	v, _ := json.MarshalIndent(vscode, "", "  ")
	fmt.Printf(`No MCP_API_KEYS set: generated an API key for this run. It is shown once.

  %s

Claude Desktop (claude_desktop_config.json):
%s

VS Code (.vscode/mcp.json):
%s

To keep it across restarts: export %s='%s:quickstart'

`, key, c, v, mcpauth.EnvAPIKeys, key)
}
