package mcpauth_test

import (
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"

	"github.com/mcpauth/mcpauth"
)

// A protected resource: where its metadata is, what the document says, and
// the challenge a request without a token gets. (The OAuthVerifier that
// checks tokens needs a reachable authorization server; see docs/oauth.md.)
func ExampleNewProtectedResource() {
	pr, err := mcpauth.NewProtectedResource(mcpauth.ProtectedResourceOptions{
		Resource:             "https://mcp.example.com/mcp",
		AuthorizationServers: []string{"https://auth.example.com"},
		ScopesSupported:      []string{"mcp:tools"},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(pr.MetadataURL())

	w := httptest.NewRecorder()
	pr.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/.well-known/oauth-protected-resource/mcp", nil))
	fmt.Print(w.Body)

	noToken := mcpauth.AuthenticatorFunc(func(*http.Request) (*mcpauth.Principal, error) { return nil, mcpauth.ErrNoCredentials })
	h := mcpauth.Require(&mcpauth.RequireOptions{Resource: pr, Logger: quietLogger}, noToken)(http.NotFoundHandler())
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/mcp", nil))
	fmt.Println(w.Code, w.Header().Get("WWW-Authenticate"))
	// Output:
	// https://mcp.example.com/.well-known/oauth-protected-resource/mcp
	// {"resource":"https://mcp.example.com/mcp","authorization_servers":["https://auth.example.com"],"scopes_supported":["mcp:tools"],"bearer_methods_supported":["header"]}
	// 401 Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp", scope="mcp:tools"
}
