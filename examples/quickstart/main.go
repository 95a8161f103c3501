// Command quickstart serves an MCP server protected by API keys.
//
//	go run ./examples/quickstart [-addr 127.0.0.1:8080] [-tls-cert cert.pem -tls-key key.pem] [-metrics]
//
// It reads keys from MCP_API_KEYS (KEY, KEY:SUBJECT or KEY:SUBJECT:ROLE|ROLE,
// comma-separated). With none, it generates one, prints it once with the
// client configurations to paste, and serves.
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
	"syscall"

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

// run is main with its surroundings passed in, so that a test can run it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("quickstart", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var sf serverFlags
	sf.register(fs)
	metrics := registerMetrics(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	logger := log.New(stderr, "", log.LstdFlags)

	ro, withMetrics, err := observe(*metrics, nil)
	if err != nil {
		return err
	}
	h, generated, err := newHandler(getenv(mcpauth.EnvAPIKeys), ro)
	if err != nil {
		return err
	}
	h = withMetrics(h)
	l, err := sf.listen(logger)
	if err != nil {
		return err
	}
	if generated != "" {
		fmt.Fprintf(stdout, "No %s set: generated an API key for this run. It is shown once.\n\n  %s\n\n", mcpauth.EnvAPIKeys, generated)
		fmt.Fprintf(stdout, "To keep it across restarts: export %s='%s:quickstart'\n\n", mcpauth.EnvAPIKeys, generated)
		printClients(stdout, "quickstart", l.url, generated)
	}
	logger.Printf("MCP server on %s", l.url)
	return serve(ctx, l, h, logger)
}

// newHandler returns the server's handler for the keys in env (the
// MCP_API_KEYS format), protected by Require with ro (nil: the defaults,
// lockout included). With no keys it generates one and returns it.
func newHandler(env string, ro *mcpauth.RequireOptions) (_ http.Handler, generated string, _ error) {
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

	server := mcp.NewServer(&mcp.Implementation{Name: "mcpauth-quickstart", Version: "1.0.0"}, nil)
	mcp.AddTool(server, &mcp.Tool{Name: "hello", Description: "Greet someone"}, hello)
	mcp.AddTool(server, &mcp.Tool{Name: "whoami", Description: "Show who you are authenticated as"}, whoami)
	handler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil)
	mux := http.NewServeMux()
	mux.Handle("/mcp", mcpauth.Require(ro, auth)(handler))
	return mux, generated, nil
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
