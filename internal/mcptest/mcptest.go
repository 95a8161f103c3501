// Package mcptest connects go-sdk's real MCP client to a server under test in
// each protocol mode that mcpauth supports.
package mcptest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// A Mode is one way a client and a server can speak MCP over Streamable HTTP.
type Mode struct {
	Name string
	// ProtocolVersion is what the client asks for.
	ProtocolVersion string
	// Stateless is StreamableHTTPOptions.Stateless on the server.
	Stateless bool
}

// Modes are the modes every end-to-end test runs in: 2025-11-25 with
// sessions, 2026-07-28 (no sessions, no initialize), and a stateless server.
//
// go-sdk serves 2026-07-28 only from a stateless handler: a stateful one
// answers the client's server/discover in a way that makes it fall back to
// 2025-11-25 with initialize, so the 2026-07-28 mode must be Stateless
// (TestModesSpeakTheirVersion).
var Modes = []Mode{
	{Name: "2025-11-25", ProtocolVersion: "2025-11-25"},
	{Name: "2026-07-28", ProtocolVersion: "2026-07-28", Stateless: true},
	{Name: "stateless", ProtocolVersion: "2025-11-25", Stateless: true},
}

// Handler returns go-sdk's Streamable HTTP handler for server in mode m.
func (m Mode) Handler(server *mcp.Server) *mcp.StreamableHTTPHandler {
	return mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server },
		&mcp.StreamableHTTPOptions{Stateless: m.Stateless})
}

// Serve starts h on a loopback test server that is closed when t ends.
func Serve(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// Headers is a set of request headers that a test may change between calls,
// for example to rotate a credential within one session.
type Headers struct {
	mu sync.Mutex
	h  http.Header
}

// NewHeaders returns Headers holding one header.
func NewHeaders(name, value string) *Headers {
	h := &Headers{h: http.Header{}}
	h.h.Set(name, value)
	return h
}

// Set replaces the headers with a single header.
func (h *Headers) Set(name, value string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.h = http.Header{}
	h.h.Set(name, value)
}

// RoundTripper returns a transport that adds the current headers to every
// request.
func (h *Headers) RoundTripper() http.RoundTripper {
	return roundTripper{h}
}

type roundTripper struct{ h *Headers }

func (rt roundTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	rt.h.mu.Lock()
	for k, v := range rt.h.h {
		r.Header[k] = v
	}
	rt.h.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

// Connect connects go-sdk's client to url in mode m, sending headers with
// every request. The session is closed when t ends. It returns the error of
// the connection attempt, so that a test can also check a refusal.
func Connect(t testing.TB, m Mode, url string, headers *Headers) (*mcp.ClientSession, error) {
	t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: "mcptest", Version: "1"}, nil)
	transport := &mcp.StreamableClientTransport{Endpoint: url, DisableStandaloneSSE: true}
	if headers != nil {
		transport.HTTPClient = &http.Client{Transport: headers.RoundTripper()}
	}
	cs, err := c.Connect(context.Background(), transport, &mcp.ClientSessionOptions{ProtocolVersion: m.ProtocolVersion})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { cs.Close() })
	return cs, nil
}

// ToolNames lists the tools cs sees (one tools/list page: the servers under
// test offer fewer tools than a page holds) and returns their names, sorted,
// with the result itself. A failed list ends the test.
func ToolNames(t testing.TB, cs *mcp.ClientSession) ([]string, *mcp.ListToolsResult) {
	t.Helper()
	res, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(res.Tools))
	for _, tool := range res.Tools {
		names = append(names, tool.Name)
	}
	slices.Sort(names)
	return names, res
}
