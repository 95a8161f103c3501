package mcpauth_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"

	"github.com/mcpauth/mcpauth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// This is the whole integration: an existing go-sdk server, its Streamable
// HTTP handler, and API keys in front of it.
func Example() {
	server := mcp.NewServer(&mcp.Implementation{Name: "example", Version: "1"}, nil)
	mcp.AddTool(server, &mcp.Tool{Name: "whoami"}, func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		p := mcpauth.PrincipalFromRequest(req) // the caller of this request
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: p.Subject + " via " + string(p.Method)}}}, nil, nil
	})

	// In production: keys, err := mcpauth.APIKeysFromEnv()
	keys, err := mcpauth.NewAPIKeys(mcpauth.APIKey{Key: "example-key-0123456789", Subject: "alice", Roles: []string{"admin"}})
	if err != nil {
		log.Fatal(err)
	}
	handler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil)
	protected := mcpauth.Require(nil, keys)(handler)

	srv := httptest.NewServer(protected) // or http.ListenAndServe(addr, protected)
	defer srv.Close()

	resp, err := http.Post(srv.URL, "application/json", nil)
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	fmt.Println("without a key:", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))

	client := mcp.NewClient(&mcp.Implementation{Name: "client", Version: "1"}, nil)
	transport := &mcp.StreamableClientTransport{
		Endpoint:   srv.URL,
		HTTPClient: &http.Client{Transport: withHeader{"X-API-Key", "example-key-0123456789"}},
	}
	session, err := client.Connect(context.Background(), transport, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer session.Close()
	res, err := session.CallTool(context.Background(), &mcp.CallToolParams{Name: "whoami"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("whoami:", res.Content[0].(*mcp.TextContent).Text)
	// Output:
	// without a key: 401 Bearer
	// whoami: alice via apikey
}

// withHeader adds one header to every request, as an MCP client configured
// with "headers" does.
type withHeader struct{ name, value string }

func (h withHeader) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(h.name, h.value)
	return http.DefaultTransport.RoundTrip(r)
}

// Keys for a deployment come from the environment: MCP_API_KEYS holds
// comma-separated entries KEY, KEY:SUBJECT or KEY:SUBJECT:ROLE|ROLE.
func ExampleParseAPIKeys() {
	keys, err := mcpauth.ParseAPIKeys("first-key-0123456789:alice:admin|editor, second-key-0123456789:bob\n")
	if err != nil {
		log.Fatal(err)
	}
	for _, k := range keys {
		fmt.Println(k.Subject, k.Roles)
	}
	// Output:
	// alice [admin editor]
	// bob []
}
