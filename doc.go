// Package mcpauth adds authentication and authorization to MCP servers built
// on github.com/modelcontextprotocol/go-sdk.
//
// [Require] wraps the server's Streamable HTTP handler and authenticates
// every request once, into a [Principal], with the first of its
// [Authenticator]s that finds a credential of its kind: [APIKeys] (from
// MCP_API_KEYS or code), a [JWTVerifier] (tokens of an identity provider, by
// JWKS URL or local keys; [JWTIssuer] mints them). A [Guard] enforces a
// [Policy] of roles and scopes per tool inside go-sdk. Every decision is an
// [Event] for an [EventSink]; state that must last goes through a [Store].
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
// Guides: docs/jwt.md (JWT and identity providers), docs/oauth.md (OAuth
// protected resource metadata and the [OAuthVerifier]), docs/rbac.md (the
// guard and policies), docs/troubleshooting.md (what clients print on a 401).
package mcpauth
