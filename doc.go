// Package mcpauth adds authentication and authorization to MCP servers built
// on github.com/modelcontextprotocol/go-sdk.
//
// [Require] wraps the server's Streamable HTTP handler and authenticates
// every request once, into a [Principal], with the first of its
// [Authenticator]s that finds its kind of credential: [APIKeys], a
// [JWTVerifier] (an identity provider's tokens; [JWTIssuer] mints them), an
// [OAuthVerifier]. A [Guard] enforces a [Policy] per tool inside go-sdk.
// Decisions are [Event]s for an [EventSink]; lasting state is in a [Store].
//
//	keys, err := mcpauth.APIKeysFromEnv() // MCP_API_KEYS="KEY:alice:admin"
//	if err != nil {
//		log.Fatal(err)
//	}
//	handler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil)
//	http.Handle("/mcp", mcpauth.Require(nil, keys)(handler))
//
// Inside a tool, read the caller with [PrincipalFromRequest], never from the
// tool's context: in a stateful session the context belongs to the
// session's first HTTP request, so it may carry a credential that has since
// been rotated or downgraded.
//
// Guides: docs/ (jwt, oauth, rbac, authserver, stores, troubleshooting).
package mcpauth
