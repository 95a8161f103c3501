// Package demo holds the tools that the examples serve: the tutorial's
// greeting and a whoami that shows the caller as a tool sees it.
package demo

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/mcpauth/mcpauth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// HelloIn is the argument of the hello tool.
type HelloIn struct {
	Name string `json:"name" jsonschema:"the name to greet"`
}

// HelloOut is the result of the hello tool.
type HelloOut struct {
	Greeting string `json:"greeting"`
}

// Whoami is the caller as a tool sees it.
type Whoami struct {
	Subject string   `json:"subject"`
	Method  string   `json:"method"`
	Roles   []string `json:"roles"`
	Scopes  []string `json:"scopes"`
}

// WhoamiOf returns p as the whoami tool reports it.
func WhoamiOf(p *mcpauth.Principal) Whoami {
	w := Whoami{Subject: p.Subject, Method: string(p.Method), Roles: p.Roles, Scopes: p.Scopes}
	// Empty lists, not null, for clients that iterate over them.
	if w.Roles == nil {
		w.Roles = []string{}
	}
	if w.Scopes == nil {
		w.Scopes = []string{}
	}
	return w
}

// NewServer returns an MCP server with the hello and whoami tools.
func NewServer(name string) *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: name, Version: "1.0.0"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "hello", Description: "Greet someone"}, Hello)
	mcp.AddTool(s, &mcp.Tool{Name: "whoami", Description: "Show who you are authenticated as"}, WhoamiTool)
	return s
}

// Hello greets someone.
func Hello(_ context.Context, _ *mcp.CallToolRequest, in HelloIn) (*mcp.CallToolResult, HelloOut, error) {
	g := "Hello, " + in.Name + "!"
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: g}}}, HelloOut{Greeting: g}, nil
}

// WhoamiTool reports the caller. It reads the principal from the request,
// never from ctx: see mcpauth.PrincipalFromRequest.
func WhoamiTool(_ context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, Whoami, error) {
	p := mcpauth.PrincipalFromRequest(req)
	if p == nil {
		return nil, Whoami{}, errors.New("not authenticated")
	}
	return nil, WhoamiOf(p), nil
}

// ListenAndServe serves h at addr until ctx is done, with the timeouts a
// server facing the network needs, then shuts down gracefully.
func ListenAndServe(ctx context.Context, addr string, h http.Handler) error {
	srv := &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shutdown)
}
