package mcpauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/mcpauth/mcpauth/internal/header"
	"github.com/mcpauth/mcpauth/internal/jose"
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
	if !utf8.ValidString(opts.ResourceName) || strings.ContainsFunc(opts.ResourceName, unicode.IsControl) || len(opts.ResourceName) > MaxEventValueLen {
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
		Kind:   EventConfiguration,
		Detail: "RequireOptions.ResourceMetadataURL differs from Resource.MetadataURL(); challenges carry Resource's",
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

// The OAuth error classes. Each refines [ErrUnavailable] or
// [ErrNoCredentials]: a token is never let through because the
// authorization server could not be asked.
var (
	errDiscoveryPending error = &errorClass{msg: "mcpauth: authorization server metadata not discovered yet", reason: "as_metadata_unavailable", desc: "Authentication is temporarily unavailable.", parent: ErrUnavailable}
	// errAPIKeyBearer and errForeignToken leave a bearer value to another
	// authenticator (DESIGN: a bearer value is routed by its shape).
	errAPIKeyBearer error = &errorClass{msg: "mcpauth: OAuth verifier: an API key, not an OAuth token", reason: "no_credentials", desc: ErrNoCredentials.(*errorClass).desc, parent: ErrNoCredentials}
	errForeignToken error = &errorClass{msg: "mcpauth: OAuth verifier: a token of another issuer", reason: "no_credentials", desc: ErrNoCredentials.(*errorClass).desc, parent: ErrNoCredentials}
)

const (
	defaultOAuthCacheTTL    = 30 * time.Second
	defaultDiscoveryTimeout = 10 * time.Second
	maxASMetadataSize       = 256 << 10
	// The background retry of a discovery that failed at start-up: the
	// first after discoveryRetryMin, then twice as long each time, at most
	// discoveryRetryMax.
	discoveryRetryMin = 250 * time.Millisecond
	discoveryRetryMax = 30 * time.Second
	// keySourceEventInterval bounds how often a fault of the authorization
	// server is reported as an EventKeySource while it lasts; every request
	// it fails is reported by Require all the same.
	keySourceEventInterval = 10 * time.Second
)

// OAuthVerifierOptions configures [NewOAuthVerifier]. The zero value of every
// field but Issuer and Resource is the strict setting.
type OAuthVerifierOptions struct {
	// Issuer is the authorization server's issuer identifier (RFC 8414 §2),
	// for example "https://auth.example.com" or
	// "https://auth.example.com/realms/mcp". Its metadata is discovered
	// from it, and the metadata's issuer must equal it byte for byte. It
	// must be one of Resource's AuthorizationServers. Required.
	Issuer string

	// Resource is the protected resource the tokens must be meant for: a
	// token whose audience (aud) does not name Resource.Resource() is
	// refused (RFC 8707), however valid it is otherwise. Required.
	Resource *ProtectedResource

	// ClientID and ClientSecret are this server's credentials at the
	// authorization server's introspection endpoint (RFC 7662), sent with
	// client_secret_basic. With them, tokens that are not JWTs (opaque
	// tokens), and JWTs when the authorization server publishes no
	// jwks_uri, are checked by introspection. Empty (the default) means no
	// introspection: such tokens are left to other authenticators.
	ClientID     string
	ClientSecret string

	// CacheTTL is how long a checked token is remembered, never past its
	// exp: a verified JWT, and an introspection's answer (positive or
	// negative). A token revoked at the authorization server may so keep
	// working here for up to CacheTTL. Zero (the default) means 30
	// seconds; a negative value turns the caches off.
	CacheTTL time.Duration
	// CacheSize bounds how many tokens each cache holds. Zero (the default)
	// means 10000.
	CacheSize int

	// Leeway is how far the clocks of this server and the authorization
	// server may disagree when exp and nbf are checked. Zero (the default)
	// allows none.
	Leeway time.Duration

	// RequireAccessTokenType accepts only JWTs typed "at+jwt" (RFC 9068
	// §4). See [TrustedIssuer].RequireAccessTokenType.
	RequireAccessTokenType bool

	// RoleClaims and ScopeClaims name the claims (of a JWT, or members of
	// an introspection response) that hold the principal's roles and
	// scopes, as in [TrustedIssuer]. Nil (the default) means "role" and
	// "roles", and "scope", "scp" and "permissions".
	RoleClaims  []string
	ScopeClaims []string

	// HTTPClient makes every request to the authorization server
	// (metadata, JWKS, introspection). Redirects are never followed, so a
	// token goes to the introspection endpoint and nowhere else. Nil (the
	// default) means a client with a 10-second timeout.
	HTTPClient *http.Client

	// Events receives an [EventKeySource] event when the authorization
	// server cannot be reached (at most one per 10 seconds while it lasts).
	// Nil (the default) means [LogEvents] on Logger.
	Events EventSink
	// Logger is where the default event sink, and the JWKS refresh, write.
	// Nil (the default) means slog.Default().
	Logger *slog.Logger

	// Clock returns the current time. Nil (the default) means time.Now.
	Clock func() time.Time
}

// An OAuthVerifier authenticates requests that carry an access token of one
// OAuth 2.0 authorization server, named by its issuer URL, as
// "Authorization: Bearer <token>". It is an [Authenticator].
//
// It discovers the authorization server's metadata (RFC 8414, then OpenID
// Connect Discovery), then checks a JWT access token with the JWKS the
// metadata names, as a [JWTVerifier] with [MethodOAuth] would, and any other
// token by introspection (RFC 7662) when ClientID is set. Either way the
// token must name the [ProtectedResource] in its audience. The token is
// never sent anywhere but to the introspection endpoint.
//
// A bearer value with the [APIKeyPrefix], and a JWT whose iss names another
// issuer, are left to other authenticators (so that API keys and a
// [JWTVerifier] for other issuers can be combined with it; put the
// OAuthVerifier first).
//
// The principal's Method is [MethodOAuth], Subject is sub, Issuer the
// configured issuer, ClientID is client_id, Roles and Scopes come from the
// RoleClaims and ScopeClaims, Expiry is exp, and KeyID is the token's kid
// or jti (a JWT) or its jti or a fingerprint (introspection).
//
// An OAuthVerifier is safe for concurrent use. Call Close to stop its
// background work.
type OAuthVerifier struct {
	issuer  string
	opts    OAuthVerifierOptions // copied, with defaults filled in
	client  *http.Client
	events  EventSink
	now     func() time.Time
	state   atomic.Pointer[oauthState] // nil until discovery succeeds
	cancel  context.CancelFunc
	done    chan struct{} // closed when the background discovery ends
	closed  sync.Once
	lastKSE atomic.Int64 // when an EventKeySource was last reported, Unix ns
}

// oauthState is what discovery found.
type oauthState struct {
	meta       *oauthex.AuthServerMeta
	jwt        *JWTVerifier  // nil: the server publishes no jwks_uri
	introspect *introspector // nil: no introspection
}

// NewOAuthVerifier discovers the authorization server's metadata and returns
// the verifier. ctx bounds the discovery (10 seconds unless ctx ends
// sooner); the verifier outlives it.
//
// It returns an error for a bad configuration, and for an authorization
// server whose metadata cannot work: an issuer that differs from Issuer,
// no jwks_uri and no introspection to check tokens with, ClientID set but no
// introspection_endpoint, endpoints that are not https. When the
// authorization server cannot be reached, or answers with a server error, it
// returns the verifier all the same: discovery is retried in the background
// (after 250 ms, then twice as long each time up to 30 s), and until it
// succeeds every request carrying a bearer token gets 503, never a pass.
// Discovery is not repeated once it succeeded; keys are refreshed from the
// JWKS as [JWTVerifier] does.
func NewOAuthVerifier(ctx context.Context, opts OAuthVerifierOptions) (*OAuthVerifier, error) {
	if err := checkIssuerURL(opts.Issuer); err != nil {
		return nil, fmt.Errorf("mcpauth: OAuth verifier: Issuer: %w", err)
	}
	if opts.Resource == nil {
		return nil, errors.New("mcpauth: OAuth verifier: no Resource (tokens must be bound to this server)")
	}
	if !slices.Contains(opts.Resource.meta.AuthorizationServers, opts.Issuer) {
		return nil, fmt.Errorf("mcpauth: OAuth verifier: Issuer %q is not among the Resource's AuthorizationServers, so clients are never sent to it", opts.Issuer)
	}
	if (opts.ClientID == "") != (opts.ClientSecret == "") {
		return nil, errors.New("mcpauth: OAuth verifier: set both ClientID and ClientSecret, or neither")
	}
	if opts.CacheSize < 0 || opts.Leeway < 0 {
		return nil, errors.New("mcpauth: OAuth verifier: negative option")
	}
	if opts.CacheTTL == 0 {
		opts.CacheTTL = defaultOAuthCacheTTL
	}
	if opts.CacheSize == 0 {
		opts.CacheSize = defaultCacheSize
	}
	opts.RoleClaims = slices.Clone(opts.RoleClaims)
	opts.ScopeClaims = slices.Clone(opts.ScopeClaims)
	v := &OAuthVerifier{issuer: opts.Issuer, opts: opts, events: opts.Events, now: opts.Clock, done: make(chan struct{})}
	if v.events == nil {
		v.events = LogEvents(opts.Logger)
	}
	if v.now == nil {
		v.now = time.Now
	}
	v.client = &http.Client{Timeout: defaultJWKSTimeout}
	if opts.HTTPClient != nil {
		c := *opts.HTTPClient
		v.client = &c
	}
	// A redirect would send the token (in an introspection request's body)
	// to wherever the redirect points.
	v.client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	v.opts.HTTPClient = v.client

	dctx, cancel := context.WithTimeout(ctx, defaultDiscoveryTimeout)
	st, err := v.discover(dctx)
	cancel()
	bg, stop := context.WithCancel(context.Background())
	v.cancel = stop
	switch {
	case err == nil:
		v.state.Store(st)
		close(v.done)
	case errors.Is(err, errDiscoveryPending):
		v.reportKeySource("authorization server metadata unavailable")
		go v.retryDiscovery(bg)
	default:
		stop()
		return nil, fmt.Errorf("mcpauth: OAuth verifier: %w", err)
	}
	return v, nil
}

// Close stops the background discovery and the JWKS refresh. The verifier
// keeps working with what it has.
func (v *OAuthVerifier) Close() error {
	v.closed.Do(func() {
		v.cancel()
		<-v.done
		if st := v.state.Load(); st != nil && st.jwt != nil {
			st.jwt.Close()
		}
	})
	return nil
}

// AuthServerMetadata returns a copy of the authorization server's metadata,
// or nil while it has not been discovered.
func (v *OAuthVerifier) AuthServerMetadata() *oauthex.AuthServerMeta {
	st := v.state.Load()
	if st == nil {
		return nil
	}
	m := *st.meta
	return &m
}

// Authenticate implements [Authenticator].
func (v *OAuthVerifier) Authenticate(r *http.Request) (*Principal, error) {
	if v == nil {
		return nil, failure(MethodOAuth, ErrUnavailable, "", "not configured")
	}
	token, _, ok, _, jwt := header.BearerJWT(r.Header)
	if !ok {
		return nil, ErrNoCredentials
	}
	if strings.HasPrefix(token, APIKeyPrefix) {
		return nil, errAPIKeyBearer
	}
	st := v.state.Load()
	if st == nil {
		return nil, failure(MethodOAuth, errDiscoveryPending, "", "authorization server metadata not discovered yet")
	}
	jwtShaped := jwt || unsecuredJWT(token)
	if jwtShaped && st.jwt != nil {
		p, err := st.jwt.Verify(r.Context(), token)
		if errors.Is(err, errTokenIssuer) {
			// Not this issuer's token (or one that names none): another
			// authenticator may know it; Require refuses it if none does.
			return nil, errForeignToken
		}
		return p, err
	}
	if st.introspect == nil {
		return nil, ErrNoCredentials
	}
	if jwtShaped && !v.mayBeOurs(token) {
		return nil, errForeignToken
	}
	return st.introspect.check(r.Context(), token)
}

// mayBeOurs reports whether a JWT that is to be introspected may be this
// issuer's: its iss, read without checking the signature (the answer only
// decides who checks it), names this issuer or nothing readable.
func (v *OAuthVerifier) mayBeOurs(token string) bool {
	dot1 := strings.IndexByte(token, '.')
	dot2 := strings.LastIndexByte(token, '.')
	raw, err := jose.DecodeSegment(token[dot1+1:dot2], header.MaxCredentialLen)
	if err != nil {
		return true
	}
	claims, err := jose.DecodeObject(raw, maxJSONDepth)
	if err != nil {
		return true
	}
	iss, ok := claims["iss"].(string)
	return !ok || iss == v.issuer
}

// retryDiscovery repeats the discovery until it succeeds or ctx ends.
func (v *OAuthVerifier) retryDiscovery(ctx context.Context) {
	defer close(v.done)
	wait := discoveryRetryMin
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		dctx, cancel := context.WithTimeout(ctx, defaultDiscoveryTimeout)
		st, err := v.discover(dctx)
		cancel()
		if err == nil {
			if ctx.Err() != nil {
				// Closed meanwhile: Close does not see this state.
				if st.jwt != nil {
					st.jwt.Close()
				}
				return
			}
			v.state.Store(st)
			return
		}
		if ctx.Err() != nil {
			return
		}
		// A definitive failure now (say, an issuer mismatch) is as likely a
		// server still starting as a misconfiguration: keep trying, and say
		// so.
		detail := "authorization server metadata unavailable"
		if !errors.Is(err, errDiscoveryPending) {
			detail = "authorization server metadata unusable"
		}
		v.reportKeySource(detail)
		wait = min(2*wait, discoveryRetryMax)
	}
}

// reportKeySource reports a fault of the authorization server, at most once
// per keySourceEventInterval.
func (v *OAuthVerifier) reportKeySource(detail string) {
	now := time.Now()
	last := v.lastKSE.Load()
	if last != 0 && now.UnixNano()-last < int64(keySourceEventInterval) {
		return
	}
	if !v.lastKSE.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	emit(context.Background(), v.events, Event{Kind: EventKeySource, Outcome: OutcomeFailure, Method: MethodOAuth, Reason: "unavailable", Detail: detail, Time: now})
}

// discover fetches and checks the authorization server's metadata and sets
// up the checks it allows. Its error wraps errDiscoveryPending when the
// server could not be reached or answered with a server error.
func (v *OAuthVerifier) discover(ctx context.Context) (*oauthState, error) {
	meta, err := v.fetchMetadata(ctx)
	if err != nil {
		return nil, err
	}
	st := &oauthState{meta: meta}
	if meta.JWKSURI != "" {
		st.jwt, err = NewJWTVerifier(JWTVerifierOptions{
			Issuers: []TrustedIssuer{{
				Issuer:                 v.issuer,
				Method:                 MethodOAuth,
				JWKSURL:                meta.JWKSURI,
				Audiences:              []string{v.opts.Resource.resource},
				RequireAccessTokenType: v.opts.RequireAccessTokenType,
				RoleClaims:             v.opts.RoleClaims,
				ScopeClaims:            v.opts.ScopeClaims,
			}},
			Leeway:     v.opts.Leeway,
			CacheTTL:   v.opts.CacheTTL,
			CacheSize:  v.opts.CacheSize,
			HTTPClient: v.client,
			Events:     v.events,
			Logger:     v.opts.Logger,
			Clock:      v.now,
		})
		if err != nil {
			return nil, fmt.Errorf("the jwks_uri cannot be used: %w", err)
		}
	}
	if v.opts.ClientID != "" {
		if meta.IntrospectionEndpoint == "" {
			st.closeJWT()
			return nil, errors.New("ClientID is set but the authorization server publishes no introspection_endpoint")
		}
		if m := meta.IntrospectionEndpointAuthMethodsSupported; len(m) > 0 && !slices.Contains(m, "client_secret_basic") {
			st.closeJWT()
			return nil, errors.New("the introspection endpoint does not accept client_secret_basic")
		}
		st.introspect = newIntrospector(v, meta.IntrospectionEndpoint)
	}
	if st.jwt == nil && st.introspect == nil {
		return nil, errors.New("the authorization server publishes no jwks_uri, and introspection is not configured (set ClientID and ClientSecret): no token could be checked")
	}
	return st, nil
}

func (st *oauthState) closeJWT() {
	if st.jwt != nil {
		st.jwt.Close()
	}
}

// metadataURLs returns the URLs at which the metadata of issuer may be, in
// the order MCP clients try them (MCP 2026-07-28, "Authorization Server
// Metadata Discovery"; RFC 8414 §3.1 and §5).
func metadataURLs(issuer string) []string {
	u, _ := url.Parse(issuer) // checked by checkIssuerURL
	origin := u.Scheme + "://" + u.Host
	path := strings.TrimSuffix(u.EscapedPath(), "/")
	if path == "" {
		return []string{
			origin + "/.well-known/oauth-authorization-server",
			origin + "/.well-known/openid-configuration",
		}
	}
	return []string{
		origin + "/.well-known/oauth-authorization-server" + path,
		origin + "/.well-known/openid-configuration" + path,
		origin + path + "/.well-known/openid-configuration",
	}
}

// fetchMetadata tries each metadata URL of the issuer in turn and returns
// the first document that is the issuer's.
func (v *OAuthVerifier) fetchMetadata(ctx context.Context) (*oauthex.AuthServerMeta, error) {
	var unavailable, unusable error
	for _, u := range metadataURLs(v.issuer) {
		meta, err := v.fetchOneMetadata(ctx, u)
		switch {
		case err == nil && meta != nil:
			return meta, nil
		case errors.Is(err, errDiscoveryPending):
			unavailable = err
		case err != nil && unusable == nil:
			unusable = err
		}
	}
	switch {
	case unavailable != nil:
		return nil, unavailable
	case unusable != nil:
		return nil, unusable
	}
	return nil, fmt.Errorf("no authorization server metadata for %q (tried %s)", v.issuer, strings.Join(metadataURLs(v.issuer), ", "))
}

// fetchOneMetadata fetches one metadata URL. It returns nil and no error
// when there is no document there (a 4xx).
func (v *OAuthVerifier) fetchOneMetadata(ctx context.Context, u string) (*oauthex.AuthServerMeta, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, errors.New("bad metadata URL")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := v.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", u, errDiscoveryPending)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return nil, fmt.Errorf("fetching %s: status %d: %w", u, resp.StatusCode, errDiscoveryPending)
	case resp.StatusCode != http.StatusOK:
		return nil, nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxASMetadataSize+1))
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", u, errDiscoveryPending)
	}
	if len(body) > maxASMetadataSize {
		return nil, fmt.Errorf("the metadata at %s is larger than %d bytes", u, maxASMetadataSize)
	}
	meta, err := parseAuthServerMeta(body, v.issuer)
	if err != nil {
		return nil, fmt.Errorf("the metadata at %s: %w", u, err)
	}
	return meta, nil
}

// parseAuthServerMeta reads a metadata document strictly and checks what
// this package relies on: the issuer, equal to issuer byte for byte (RFC
// 8414 §3.3), and the endpoints a token may be sent to or keys fetched from.
func parseAuthServerMeta(body []byte, issuer string) (*oauthex.AuthServerMeta, error) {
	// decodeObject refuses duplicate members; the exact names are then read
	// from the map, since encoding/json would also match "Issuer" or
	// "ISSUER" to the struct's field.
	m, err := jose.DecodeObject(body, maxJSONDepth)
	if err != nil {
		return nil, errors.New("not a JSON object")
	}
	var meta oauthex.AuthServerMeta
	if err := json.Unmarshal(body, &meta); err != nil {
		return nil, errors.New("not authorization server metadata")
	}
	exact := func(name string) string { s, _ := m[name].(string); return s }
	if exact("issuer") != meta.Issuer || exact("jwks_uri") != meta.JWKSURI || exact("introspection_endpoint") != meta.IntrospectionEndpoint {
		return nil, errors.New("members named ambiguously")
	}
	if meta.Issuer != issuer {
		return nil, fmt.Errorf("its issuer %q is not %q", meta.Issuer, issuer)
	}
	for _, e := range []struct{ name, value string }{{"jwks_uri", meta.JWKSURI}, {"introspection_endpoint", meta.IntrospectionEndpoint}} {
		if e.value == "" {
			continue
		}
		u, err := url.Parse(e.value)
		if err != nil {
			return nil, fmt.Errorf("%s is not a URL", e.name)
		}
		if err := checkHTTPSURL(u); err != nil {
			return nil, fmt.Errorf("%s: %w", e.name, err)
		}
	}
	return &meta, nil
}
