package mcpauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/modelcontextprotocol/go-sdk/oauthex"
)

// wellKnownResourcePath is the well-known URI suffix of protected resource
// metadata (RFC 9728 §3).
const wellKnownResourcePath = "/.well-known/oauth-protected-resource"

// offlineAccess is the scope that asks for refresh tokens. The MCP
// specification (2025-11-25 and 2026-07-28, "Refresh Tokens") keeps it out of
// a resource's scopes_supported and challenges: refresh tokens are the
// client's business with its authorization server, not a resource
// requirement.
const offlineAccess = "offline_access"

// ProtectedResourceOptions configures [NewProtectedResource].
type ProtectedResourceOptions struct {
	// Resource is the canonical URL of the MCP endpoint (RFC 8707 §2, RFC
	// 9728 §1.2), for example "https://mcp.example.com/mcp": what clients
	// connect to, send as the resource parameter, and compare, byte for byte,
	// with the resource member of the metadata. It must be an absolute https
	// URL (http only on a loopback host, for development) in its normal
	// form: a lowercase scheme and host, no default port, no user
	// information, query, fragment or dot segments. Required.
	Resource string

	// AuthorizationServers are the issuer identifiers (RFC 8414 §2) of the
	// authorization servers whose tokens this resource accepts, advertised
	// as authorization_servers. Each must be an https URL (http only on a
	// loopback host) without query or fragment. At least one is required
	// (MCP requires it).
	AuthorizationServers []string

	// ScopesSupported is advertised as scopes_supported: the minimal set of
	// scopes a client needs for basic use of the server, which a client
	// requests when a challenge names none (MCP "Scope Selection Strategy").
	// offline_access is refused: it is not a resource requirement. Nil (the
	// default) advertises none.
	ScopesSupported []string

	// ChallengeScopes are the scopes named in the scope parameter of every
	// 401 challenge, the scopes a client should ask for to start (RFC 6750
	// §3, MCP "Scope Selection Strategy"). Nil (the default) means
	// ScopesSupported; an empty, non-nil slice names none. offline_access is
	// refused. Scopes that a particular tool needs beyond these are asked
	// for by a 403 insufficient_scope challenge ([Guard.RequireScopes]).
	ChallengeScopes []string

	// ResourceName is the human-readable name of the server
	// (resource_name), which a client may show when asking the user for
	// consent. Empty (the default) leaves it out.
	ResourceName string
	// ResourceDocumentation, ResourcePolicyURI and ResourceTOSURI are
	// https (or http) URLs of pages about the server (RFC 9728 §2). Empty
	// (the default) leaves each out.
	ResourceDocumentation string
	ResourcePolicyURI     string
	ResourceTOSURI        string

	// CertificateBoundTokens advertises
	// tls_client_certificate_bound_access_tokens (RFC 9728 §2, RFC 8705
	// §3.4): this resource accepts tokens bound to a client certificate,
	// checked against the connection's (see [MTLS]). False (the default)
	// leaves it out.
	CertificateBoundTokens bool
}

// A ProtectedResource is this MCP server as an OAuth 2.0 protected resource:
// its RFC 9728 metadata and the challenges that point clients to it. One
// value configures both, so they cannot disagree: serve it (it is an
// http.Handler for the metadata document) and hand it to [Require] as
// [RequireOptions].Resource, and to [NewOAuthVerifier], which binds tokens to
// its resource.
//
// The document is built from the configuration alone, never from the
// request: a Host header cannot change the resource or the authorization
// servers a client is sent to.
type ProtectedResource struct {
	resource    string
	metadataURL string
	// paths are the escaped paths the document is served at: the
	// path-inserted one (RFC 9728 §3.1) and the root one. They are equal
	// for a resource without a path.
	paths     [2]string
	doc       []byte
	meta      oauthex.ProtectedResourceMetadata
	hint      string   // the scope parameter of 401 challenges, or ""
	responses sync.Map // *errorClass -> *response, built once per class
}

// NewProtectedResource checks opts and returns the protected resource. It
// returns an error for a resource URL that is not canonical or not https
// (outside loopback), no or bad authorization server, a scope that is not an
// RFC 6749 scope token, a duplicate scope, or offline_access among the
// scopes.
func NewProtectedResource(opts ProtectedResourceOptions) (*ProtectedResource, error) {
	u, err := canonicalResource(opts.Resource)
	if err != nil {
		return nil, fmt.Errorf("mcpauth: protected resource: Resource: %w", err)
	}
	if len(opts.AuthorizationServers) == 0 {
		return nil, errors.New("mcpauth: protected resource: no AuthorizationServers (MCP requires at least one)")
	}
	for i, as := range opts.AuthorizationServers {
		if err := checkIssuerURL(as); err != nil {
			return nil, fmt.Errorf("mcpauth: protected resource: AuthorizationServers[%d]: %w", i, err)
		}
		if slices.Contains(opts.AuthorizationServers[:i], as) {
			return nil, fmt.Errorf("mcpauth: protected resource: AuthorizationServers[%d]: %q listed twice", i, as)
		}
	}
	if err := checkScopes(opts.ScopesSupported); err != nil {
		return nil, fmt.Errorf("mcpauth: protected resource: ScopesSupported: %w", err)
	}
	challenge := opts.ChallengeScopes
	if challenge == nil {
		challenge = opts.ScopesSupported
	}
	if err := checkScopes(challenge); err != nil {
		return nil, fmt.Errorf("mcpauth: protected resource: ChallengeScopes: %w", err)
	}
	if !utf8.ValidString(opts.ResourceName) || strings.ContainsFunc(opts.ResourceName, unicode.IsControl) || len(opts.ResourceName) > maxEventValueLen {
		return nil, errors.New("mcpauth: protected resource: ResourceName is not a short line of text")
	}
	for _, f := range []struct{ name, value string }{
		{"ResourceDocumentation", opts.ResourceDocumentation},
		{"ResourcePolicyURI", opts.ResourcePolicyURI},
		{"ResourceTOSURI", opts.ResourceTOSURI},
	} {
		if f.value == "" {
			continue
		}
		if d, err := url.Parse(f.value); err != nil || (d.Scheme != "https" && d.Scheme != "http") || d.Host == "" {
			return nil, fmt.Errorf("mcpauth: protected resource: %s is not an http(s) URL", f.name)
		}
	}

	pr := &ProtectedResource{resource: opts.Resource, hint: strings.Join(challenge, " ")}
	// RFC 9728 §3.1: the well-known suffix goes between the host and the
	// path, and a path of "/" alone counts as none.
	path := u.EscapedPath()
	if path == "/" {
		path = ""
	}
	pr.paths = [2]string{wellKnownResourcePath + path, wellKnownResourcePath}
	pr.metadataURL = u.Scheme + "://" + u.Host + pr.paths[0]
	pr.meta = oauthex.ProtectedResourceMetadata{
		Resource:               opts.Resource,
		AuthorizationServers:   slices.Clone(opts.AuthorizationServers),
		ScopesSupported:        slices.Clone(opts.ScopesSupported),
		BearerMethodsSupported: []string{"header"}, // RFC 6750 §2.1 only: Require reads no other
		ResourceName:           opts.ResourceName,
		ResourceDocumentation:  opts.ResourceDocumentation,
		ResourcePolicyURI:      opts.ResourcePolicyURI,
		ResourceTOSURI:         opts.ResourceTOSURI,

		TLSClientCertificateBoundAccessTokens: opts.CertificateBoundTokens,
	}
	if pr.doc, err = json.Marshal(&pr.meta); err != nil {
		return nil, fmt.Errorf("mcpauth: protected resource: %w", err)
	}
	pr.doc = append(pr.doc, '\n')
	return pr, nil
}

// Resource returns the canonical URL of the resource, the audience its
// tokens must name.
func (pr *ProtectedResource) Resource() string { return pr.resource }

// MetadataURL returns the URL of the metadata document at the path-inserted
// well-known location (RFC 9728 §3.1), for example
// "https://mcp.example.com/.well-known/oauth-protected-resource/mcp" for the
// resource "https://mcp.example.com/mcp". Every challenge of [Require] with
// this resource carries it as resource_metadata.
func (pr *ProtectedResource) MetadataURL() string { return pr.metadataURL }

// Metadata returns a copy of the metadata document.
func (pr *ProtectedResource) Metadata() *oauthex.ProtectedResourceMetadata {
	m := pr.meta
	m.AuthorizationServers = slices.Clone(m.AuthorizationServers)
	m.ScopesSupported = slices.Clone(m.ScopesSupported)
	m.BearerMethodsSupported = slices.Clone(m.BearerMethodsSupported)
	return &m
}

// ServeHTTP serves the metadata document at the path-inserted well-known
// path of the resource ("/.well-known/oauth-protected-resource/mcp" for an
// endpoint at "/mcp") and at the root one ("/.well-known/oauth-protected-resource"),
// both with the same content, and 404 at any other path. Mount it outside
// [Require], since clients read it before they have a token:
//
//	mux.Handle("/.well-known/oauth-protected-resource/", pr)
//	mux.Handle("/.well-known/oauth-protected-resource", pr)
//
// It answers GET and HEAD, and OPTIONS as a CORS preflight, with
// Access-Control-Allow-Origin: * so that browser-based clients can read it
// (it is public); any other method gets 405.
//
// The root document names the resource as configured, like the path-inserted
// one. A client that derives the root URL from the resource itself expects
// it to name the origin instead (RFC 9728 §3.3), and refuses it; MCP clients
// try the challenge's resource_metadata and then the path-inserted URL
// first, both of which match.
func (pr *ProtectedResource) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p := r.URL.EscapedPath(); p != pr.paths[0] && p != pr.paths[1] {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h["Access-Control-Allow-Origin"] = []string{"*"}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		h["Content-Type"] = []string{"application/json"}
		h["Content-Length"] = []string{strconv.Itoa(len(pr.doc))}
		h["Cache-Control"] = []string{"public, max-age=3600"}
		h["X-Content-Type-Options"] = []string{"nosniff"}
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write(pr.doc)
		}
	case http.MethodOptions:
		// A preflight: go-sdk's and the TypeScript SDK's clients send
		// Mcp-Protocol-Version with the request.
		h["Access-Control-Allow-Methods"] = []string{"GET, HEAD, OPTIONS"}
		h["Access-Control-Allow-Headers"] = []string{"Content-Type, Mcp-Protocol-Version"}
		h["Access-Control-Max-Age"] = []string{"86400"}
		w.WriteHeader(http.StatusNoContent)
	default:
		h["Allow"] = []string{"GET, HEAD, OPTIONS"}
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

// writeChallengeFor writes the response for a request refused with err, with
// the resource metadata of o: its Resource when set (and then the scope hint
// on a 401), else its ResourceMetadataURL. [Require] and [Guard.RequireScopes]
// answer through it, so that every challenge points to the same document.
func writeChallengeFor(w http.ResponseWriter, err error, o *RequireOptions) {
	if o.Resource != nil {
		o.Resource.writeChallenge(w, err)
		return
	}
	writeChallenge(w, err, o.ResourceMetadataURL)
}

// warnResourceConflict reports, once, a RequireOptions whose
// ResourceMetadataURL and Resource point to different documents. Resource
// wins: it is the document the server serves, and a client sent elsewhere
// would find metadata that does not describe this server.
func warnResourceConflict(o *RequireOptions, sink EventSink) {
	if o.Resource == nil || o.ResourceMetadataURL == "" || o.ResourceMetadataURL == o.Resource.metadataURL {
		return
	}
	emit(context.Background(), sink, Event{
		Kind:    EventConfiguration,
		Outcome: OutcomeFailure,
		Reason:  "resource_conflict",
		Detail:  "RequireOptions.ResourceMetadataURL differs from Resource.MetadataURL(); challenges carry Resource's",
	})
}

// writeChallenge writes the response for a request refused with err. A 401
// carries the scope hint; offline_access never appears in a challenge.
func (pr *ProtectedResource) writeChallenge(w http.ResponseWriter, err error) {
	if se := (*ScopeError)(nil); errors.As(err, &se) {
		if slices.Contains(se.Required, offlineAccess) {
			err = &ScopeError{Required: slices.DeleteFunc(slices.Clone(se.Required), func(s string) bool { return s == offlineAccess })}
		}
		writeChallenge(w, err, pr.metadataURL)
		return
	}
	resp := pr.response(classOf(err))
	if resp.status != http.StatusUnauthorized {
		writeChallenge(w, err, pr.metadataURL)
		return
	}
	h := w.Header()
	// As writeChallenge does: a refusal may say when to try again.
	if f := (*refusal)(nil); errors.As(err, &f) && f.retryAfter > 0 {
		secs := int64((f.retryAfter + time.Second - 1) / time.Second)
		h["Retry-After"] = []string{strconv.FormatInt(max(secs, 1), 10)}
	}
	h["Www-Authenticate"] = []string{resp.challenge}
	h["Content-Type"] = []string{"application/json"}
	h["Cache-Control"] = []string{"no-store"}
	w.WriteHeader(resp.status)
	_, _ = w.Write(resp.body)
}

// response returns the response for class c, built once: the package's
// response with the scope hint added to a 401's challenge.
func (pr *ProtectedResource) response(c *errorClass) *response {
	if r, ok := pr.responses.Load(c); ok {
		return r.(*response)
	}
	r := newResponse(c, pr.metadataURL, false, nil)
	if r.status == http.StatusUnauthorized && pr.hint != "" {
		// The challenge has resource_metadata already, so a parameter
		// follows a comma.
		r.challenge += ", scope=" + strconv.Quote(pr.hint)
	}
	v, _ := pr.responses.LoadOrStore(c, r)
	return v.(*response)
}

// canonicalResource checks that raw is a resource URL in the one form a
// client can compare byte for byte, and returns it parsed.
func canonicalResource(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("empty (set the canonical URL of the MCP endpoint)")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("not a URL")
	}
	if err := checkHTTPSURL(u); err != nil {
		return nil, err
	}
	if strings.ContainsRune(raw, '#') {
		return nil, errors.New("has a fragment")
	}
	switch {
	case u.RawQuery != "" || u.ForceQuery:
		// RFC 9728 §2 discourages a query; it would make the path-inserted
		// metadata URL ambiguous and byte-for-byte comparison fragile.
		return nil, errors.New("has a query")
	case u.Host != strings.ToLower(u.Host):
		return nil, errors.New("the host is not lowercase")
	case strings.HasSuffix(u.Host, ":"),
		u.Scheme == "https" && u.Port() == "443",
		u.Scheme == "http" && u.Port() == "80":
		return nil, errors.New("has an empty or default port (leave it out)")
	}
	if u.RawPath != "" {
		// An escape that url.URL would not write, such as %6d for "m":
		// equal to the plain form under RFC 3986 normalization, but not byte
		// for byte.
		return nil, fmt.Errorf("its path is not escaped in normal form (want %q)", u.String())
	}
	for seg := range strings.SplitSeq(u.EscapedPath(), "/") {
		if seg == "." || seg == ".." {
			return nil, errors.New("has a dot segment in its path")
		}
	}
	// What is left: a scheme in uppercase (url.Parse lowercases it) and
	// escapes that url.URL writes differently.
	if u.String() != raw {
		return nil, fmt.Errorf("not in normal form (want %q)", u.String())
	}
	return u, nil
}

// checkIssuerURL checks an issuer identifier (RFC 8414 §2): an https URL
// (http on loopback) without query or fragment.
func checkIssuerURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a URL")
	}
	if err := checkHTTPSURL(u); err != nil {
		return err
	}
	if strings.ContainsRune(raw, '#') {
		return errors.New("an issuer identifier has no fragment")
	}
	if u.RawQuery != "" || u.ForceQuery {
		return errors.New("an issuer identifier has no query")
	}
	return nil
}

// checkHTTPSURL checks that u is an absolute https URL, or http on a
// loopback host, without user information.
func checkHTTPSURL(u *url.URL) error {
	switch {
	case u.Scheme != "https" && u.Scheme != "http", u.Host == "", u.Opaque != "":
		return errors.New("not an absolute http(s) URL")
	case u.Scheme == "http" && !isLoopback(u.Hostname()):
		return errors.New("plain http to a host that is not loopback (use https)")
	case u.User != nil:
		return errors.New("has user information")
	}
	return nil
}

// checkScopes checks that scopes are distinct RFC 6749 §3.3 scope tokens,
// none of them offline_access.
func checkScopes(scopes []string) error {
	for i, s := range scopes {
		if !scopeToken(s) {
			return fmt.Errorf("%q is not a scope token", s)
		}
		if s == offlineAccess {
			return errors.New("offline_access is not a resource requirement (MCP: never in scopes_supported or a challenge)")
		}
		if slices.Contains(scopes[:i], s) {
			return fmt.Errorf("%q listed twice", s)
		}
	}
	return nil
}

// scopeToken reports whether s is an RFC 6749 §3.3 scope-token:
// 1*( %x21 / %x23-5B / %x5D-7E ).
func scopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
