// Package authserver is a built-in OAuth 2.1 authorization server for MCP
// servers: an [http.Handler] that serves the authorization server metadata
// (RFC 8414), the authorization endpoint with a login form and a consent
// screen, the token endpoint (authorization code with PKCE, refresh tokens
// with rotation, client credentials), dynamic client registration (RFC 7591),
// client ID metadata documents, revocation (RFC 7009), introspection
// (RFC 7662) and the JSON Web Key Set of its signing keys.
//
// Its access tokens are RFC 9068 JWTs minted by [mcpauth.JWTIssuer], with
// the user's (or, for client credentials, the client's) roles and scopes,
// so that [mcpauth.Guard] treats an OAuth caller as it treats an API-key
// caller. [Server.Verifier] hands the resource side an authenticator for
// them:
//
//	as, err := authserver.New(&authserver.Options{
//		Issuer:    "https://mcp.example.com",
//		Resources: []string{"https://mcp.example.com/mcp"},
//		Scopes:    []string{"tools:read", "tools:write"},
//		Users:     users,
//		Store:     store,
//		Secret:    secret,
//	})
//	verifier, err := as.Verifier()
//	mux.Handle("/mcp", mcpauth.Require(&mcpauth.RequireOptions{ResourceMetadataURL: …}, verifier)(mcpHandler))
//	mux.Handle("/", as)
//
// The handler answers the paths of the issuer (and the well-known metadata
// paths at the root of its host); mount it at "/" of that host, or route at
// least "/.well-known/" and the issuer's path to it. See docs/authserver.md.
package authserver

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mcpauth/mcpauth"
	"github.com/mcpauth/mcpauth/internal/limiter"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
)

// Defaults of [Options].
const (
	DefaultAccessTokenTTL  = 10 * time.Minute
	DefaultRefreshTokenTTL = 30 * 24 * time.Hour
	DefaultCodeTTL         = time.Minute
	DefaultKeyRotation     = 24 * time.Hour
	// MaxBodySize bounds the body of every request the server reads.
	MaxBodySize = 64 << 10
)

// transactionTTL is how long a user has to log in and decide.
const transactionTTL = 10 * time.Minute

// Options configures [New]. The zero value of every field but Issuer and
// Resources is the strict setting.
type Options struct {
	// Issuer is the authorization server's issuer identifier (RFC 8414 §2):
	// an https URL without query or fragment (http only on a loopback host,
	// for development), not ending in a slash. The metadata's issuer is
	// this string byte for byte, and so is the iss of every token and of
	// every authorization response. Required.
	Issuer string

	// Resources are the resource servers (RFC 8707 resource indicators,
	// usually the URL of the MCP endpoint) that tokens may be issued for;
	// a token's aud is the one its request named. A request naming another
	// is refused with invalid_target. A trailing slash, the case of scheme
	// and host, and a default port do not matter. The first is the
	// audience when a request names none (client credentials clients often
	// don't). At least one is required.
	Resources []string

	// Scopes are the scopes the server knows, published as
	// scopes_supported. A request for another is refused with
	// invalid_scope. offline_access is never one of them: a request may
	// carry it, and it only asks for a refresh token.
	Scopes []string
	// DefaultScopes are granted when an authorization or token request
	// names no scope (ChatGPT sends none), to clients without their own
	// defaults. Nil (the default) means all of Scopes.
	DefaultScopes []string

	// Clients are the pre-registered clients.
	Clients []Client

	// Users logs users in at the authorization endpoint. Nil (the
	// default) leaves the authorization code flow without users: every
	// authorization request is answered with an error.
	Users Users

	// Store keeps codes, refresh tokens, registered clients, transactions,
	// revocations and the sealed signing keys. Nil (the default) means a
	// new [mcpauth.NewMemoryStore]: nothing survives a restart, and
	// replicas share nothing.
	Store mcpauth.Store

	// Secret seals the signing keys in the Store (AES-256-GCM) and signs
	// the browser-binding cookies (HMAC-SHA-256); at least 32 random
	// bytes, the same on every replica. Nil (the default) means a random
	// secret per process: the signing keys then live in memory only, so
	// tokens stop verifying when the process restarts, and replicas cannot
	// verify each other's tokens.
	Secret []byte

	// SigningAlgorithm is "ES256" (the default, for zero) or "EdDSA".
	SigningAlgorithm string
	// KeyRotation is how long one signing key signs. A new key is
	// published one period before it signs, and an old one stays
	// published for the period after, so verifiers that cache the key set
	// for less than a period never miss a key. Zero (the default) means
	// 24 hours; it must be at least AccessTokenTTL.
	KeyRotation time.Duration

	// AccessTokenTTL is how long an access token is valid. Zero (the
	// default) means 10 minutes: short, because a JWT is checked without
	// asking this server, and a refresh costs one request.
	AccessTokenTTL time.Duration
	// RefreshTokenTTL is how long a refresh token stays valid unused; each
	// rotation starts a new period. Zero (the default) means 30 days.
	RefreshTokenTTL time.Duration
	// RefreshGracePeriod lets a client that lost a token response redeem
	// the refresh token it just rotated once more, within this time of the
	// rotation, for a new pair that replaces the lost one. Zero (the
	// default) allows no grace: a rotated refresh token presented again
	// revokes its whole family at once.
	RefreshGracePeriod time.Duration
	// CodeTTL is how long an authorization code is valid. Zero (the
	// default) means 60 seconds.
	CodeTTL time.Duration
	// RememberConsent is how long a user's approval of a client, for a
	// resource and set of scopes, is remembered, so that the consent
	// screen is skipped (the login is not). Zero (the default) remembers
	// nothing.
	RememberConsent time.Duration

	// OmitIssParameter leaves the RFC 9207 iss parameter out of
	// authorization responses and authorization_response_iss_parameter_supported
	// out of the metadata. False (the default) sends and advertises it,
	// which protects clients against mix-up attacks; set it only for a
	// client that fails on it (some Codex CLI versions).
	OmitIssParameter bool

	// RedirectSchemes are the private-use URI schemes (RFC 8252 §7.1) that
	// redirect URIs may use, answered with a page that links to the app
	// rather than a silent redirect. Nil (the default) means "cursor",
	// "vscode" and "claude"; an empty non-nil slice allows none.
	RedirectSchemes []string

	// MTLSBaseURL is an https origin (scheme and host, no path) that
	// serves this server's token, revocation and introspection endpoints
	// on a listener that asks for client certificates, published as
	// mtls_endpoint_aliases (RFC 8705 §5) under the issuer's paths. Empty
	// (the default) publishes none: clients that authenticate with a
	// certificate then use the ordinary endpoints, which must be served
	// with client certificates requested.
	MTLSBaseURL string

	// Registration configures dynamic client registration.
	Registration RegistrationOptions
	// ClientMetadata configures client ID metadata documents.
	ClientMetadata ClientMetadataOptions

	// Events receives an [mcpauth.Event] for every decision. Nil (the
	// default) means [mcpauth.LogEvents] on Logger.
	Events mcpauth.EventSink
	// Logger is where the default event sink writes. Nil (the default)
	// means slog.Default().
	Logger *slog.Logger

	// Lockout counts failed client authentications (at the token,
	// revocation and introspection endpoints) and failed logins on the
	// login form, per address and per client id or username at that
	// address, and refuses a locked-out one with 429 and Retry-After
	// before its secret or password is checked. Nil (the default) means a
	// Lockout of this server alone with the defaults of
	// [mcpauth.LockoutOptions] (20 failures per address, 5 per client or
	// username, within 15 minutes), reporting to Events. Replicas share
	// one made with LockoutOptions.Store set to their shared Store; a
	// server and the [mcpauth.Require] in front of its resource may share
	// one.
	Lockout *mcpauth.Lockout

	// Clock returns the current time. Nil (the default) means time.Now.
	Clock func() time.Time
}

// RegistrationOptions configures dynamic client registration (RFC 7591).
type RegistrationOptions struct {
	// Disabled turns the registration endpoint off. False (the default)
	// serves it: MCP clients without a pre-registration or a metadata
	// document need it.
	Disabled bool
	// InitialAccessToken, when set, must be presented as a bearer token to
	// register (RFC 7591 §3.1). Empty (the default) leaves registration
	// open, as MCP clients expect; every client registered that way is
	// public or confidential, never trusted with client credentials, and
	// gets only what users consent to.
	InitialAccessToken string
	// RatePerMinute and Burst bound registrations per remote address.
	// Zero (the default) means 10 a minute with a burst of 10.
	RatePerMinute int
	Burst         int
	// ClientTTL is how long a registered client is kept unused; each token
	// issued to it starts a new period. Zero (the default) means 30 days.
	ClientTTL time.Duration
}

// ClientMetadataOptions configures client ID metadata documents: https
// URLs used as client IDs, whose documents the server fetches.
type ClientMetadataOptions struct {
	// Disabled refuses URL client IDs. False (the default) fetches them.
	Disabled bool
	// AllowedNetworks are address ranges the fetch may reach although they
	// are private, loopback, link-local or otherwise not public. Nil (the
	// default) allows none: a client ID cannot make this server reach its
	// own network (SSRF). Tests set 127.0.0.0/8.
	AllowedNetworks []netip.Prefix
	// TLSConfig is the TLS configuration of the fetch. Nil (the default)
	// means the system's roots.
	TLSConfig *tls.Config
	// Timeout bounds one fetch. Zero (the default) means 5 seconds.
	Timeout time.Duration
	// DefaultMaxAge is how long a document without Cache-Control max-age
	// is cached. Zero (the default) means 5 minutes. A max-age is honoured
	// up to 24 hours; no-store and no-cache are honoured.
	DefaultMaxAge time.Duration
}

// A Server is the authorization server. It is an [http.Handler], safe for
// concurrent use.
type Server struct {
	issuer     string
	issuerPath string
	realm      string
	secure     bool // cookies are Secure (an https issuer)

	resources     []resource
	scopes        []string
	scopeSet      map[string]bool
	defaultScopes []string
	clients       map[string]*client
	users         Users

	store     mcpauth.Store
	keys      *keyRing
	cookieKey []byte

	accessTTL     time.Duration
	refreshTTL    time.Duration
	refreshGrace  time.Duration
	codeTTL       time.Duration
	rememberFor   time.Duration
	emitIss       bool
	mtlsBase      string // Options.MTLSBaseURL, as an origin
	tlsClients    bool   // a client authenticates with a certificate
	schemes       []string
	registration  RegistrationOptions
	cimd          *metadataFetcher
	limits        *limiter.Map
	events        mcpauth.EventSink
	lockout       *mcpauth.Lockout
	now           func() time.Time
	metadata      []byte
	routes        map[string]func(http.ResponseWriter, *http.Request)
	authorizePath string
	own           ownVerifier
}

// resource is one of Options.Resources, as configured and in normal form.
type resource struct{ raw, norm string }

// New returns a server for opts. It returns an error for a configuration
// that would be unsafe or cannot work.
func New(opts *Options) (*Server, error) {
	if opts == nil {
		return nil, errors.New("mcpauth: authserver: nil Options")
	}
	s := &Server{
		users:        opts.Users,
		store:        opts.Store,
		accessTTL:    opts.AccessTokenTTL,
		refreshTTL:   opts.RefreshTokenTTL,
		refreshGrace: opts.RefreshGracePeriod,
		codeTTL:      opts.CodeTTL,
		rememberFor:  opts.RememberConsent,
		emitIss:      !opts.OmitIssParameter,
		registration: opts.Registration,
		events:       opts.Events,
		now:          opts.Clock,
	}
	issuerURL, err := checkIssuer(opts.Issuer)
	if err != nil {
		return nil, err
	}
	s.issuer, s.issuerPath, s.realm = opts.Issuer, issuerURL.Path, issuerURL.Host
	if s.mtlsBase, err = checkMTLSBase(opts.MTLSBaseURL); err != nil {
		return nil, err
	}
	s.secure = issuerURL.Scheme == "https"
	for _, d := range []time.Duration{opts.AccessTokenTTL, opts.RefreshTokenTTL, opts.RefreshGracePeriod, opts.CodeTTL, opts.RememberConsent, opts.KeyRotation, opts.Registration.ClientTTL, opts.ClientMetadata.Timeout, opts.ClientMetadata.DefaultMaxAge} {
		if d < 0 {
			return nil, errors.New("mcpauth: authserver: negative duration in Options")
		}
	}
	if s.accessTTL == 0 {
		s.accessTTL = DefaultAccessTokenTTL
	}
	if s.refreshTTL == 0 {
		s.refreshTTL = DefaultRefreshTokenTTL
	}
	if s.codeTTL == 0 {
		s.codeTTL = DefaultCodeTTL
	}
	if s.accessTTL < time.Second || s.codeTTL < time.Second {
		return nil, errors.New("mcpauth: authserver: AccessTokenTTL and CodeTTL must be at least a second")
	}
	if s.registration.ClientTTL == 0 {
		s.registration.ClientTTL = 30 * 24 * time.Hour
	}
	if s.registration.RatePerMinute < 0 || s.registration.Burst < 0 {
		return nil, errors.New("mcpauth: authserver: negative registration rate")
	}
	if s.registration.RatePerMinute == 0 {
		s.registration.RatePerMinute = 10
	}
	if s.registration.Burst == 0 {
		s.registration.Burst = 10
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.events == nil {
		s.events = mcpauth.LogEvents(opts.Logger)
	}
	if s.lockout = opts.Lockout; s.lockout == nil {
		if s.lockout, err = mcpauth.NewLockout(&mcpauth.LockoutOptions{Events: s.events}); err != nil {
			return nil, err
		}
	}
	if s.store == nil {
		s.store = mcpauth.NewMemoryStore()
	}
	s.schemes = []string{"cursor", "vscode", "claude"}
	if opts.RedirectSchemes != nil {
		s.schemes = nil
		for _, sc := range opts.RedirectSchemes {
			sc = strings.ToLower(sc)
			if !validScheme(sc) || sc == "http" || sc == "https" || dangerousSchemes[sc] {
				return nil, fmt.Errorf("mcpauth: authserver: RedirectSchemes: %q is not a private-use scheme", sc)
			}
			s.schemes = append(s.schemes, sc)
		}
	}

	if len(opts.Resources) == 0 {
		return nil, errors.New("mcpauth: authserver: no Resources")
	}
	for _, raw := range opts.Resources {
		norm, ok := normalizeResource(raw)
		if !ok {
			return nil, fmt.Errorf("mcpauth: authserver: resource %q is not an absolute http(s) URL without fragment", raw)
		}
		s.resources = append(s.resources, resource{raw: raw, norm: norm})
	}

	s.scopeSet = map[string]bool{}
	for _, sc := range opts.Scopes {
		if !validScopeToken(sc) {
			return nil, fmt.Errorf("mcpauth: authserver: scope %q is not a valid scope token", sc)
		}
		if sc == offlineAccess {
			return nil, errors.New("mcpauth: authserver: offline_access is not a scope to list: requests may carry it to ask for a refresh token")
		}
		if !s.scopeSet[sc] {
			s.scopeSet[sc] = true
			s.scopes = append(s.scopes, sc)
		}
	}
	if opts.DefaultScopes == nil {
		s.defaultScopes = slices.Clone(s.scopes)
	} else {
		for _, sc := range opts.DefaultScopes {
			if !s.scopeSet[sc] {
				return nil, fmt.Errorf("mcpauth: authserver: default scope %q is not one of Scopes", sc)
			}
		}
		s.defaultScopes = s.orderScopes(opts.DefaultScopes)
	}

	switch len(opts.Secret) {
	case 0:
		secret := make([]byte, 32)
		if _, err := rand.Read(secret); err != nil {
			return nil, fmt.Errorf("mcpauth: authserver: %w", err)
		}
		s.cookieKey = deriveKey(secret, "cookie")
		s.keys, err = newKeyRing(s, opts, nil)
	default:
		if len(opts.Secret) < 32 {
			return nil, errors.New("mcpauth: authserver: Secret is shorter than 32 bytes")
		}
		s.cookieKey = deriveKey(opts.Secret, "cookie")
		s.keys, err = newKeyRing(s, opts, deriveKey(opts.Secret, "signing keys"))
	}
	if err != nil {
		return nil, err
	}

	s.clients = map[string]*client{}
	for i := range opts.Clients {
		c, err := s.preregistered(&opts.Clients[i])
		if err != nil {
			return nil, err
		}
		if s.clients[c.ID] != nil {
			return nil, fmt.Errorf("mcpauth: authserver: client %q configured twice", c.ID)
		}
		s.clients[c.ID] = c
		s.tlsClients = s.tlsClients || c.usesTLS()
	}

	s.limits = limiter.New(10000, s.now)
	if !opts.ClientMetadata.Disabled {
		if s.cimd, err = newMetadataFetcher(s, &opts.ClientMetadata); err != nil {
			return nil, err
		}
	}
	if s.metadata, err = s.buildMetadata(); err != nil {
		return nil, err
	}
	s.buildRoutes()
	s.record(nil, mcpauth.Event{Kind: mcpauth.EventConfiguration, Outcome: mcpauth.OutcomeSuccess, Detail: s.summary(opts)})
	return s, nil
}

// summary is the Detail of the configuration loaded event: what an
// operator checks first, and no secret.
func (s *Server) summary(opts *Options) string {
	onOff := func(on bool) string {
		if on {
			return "on"
		}
		return "off"
	}
	return "loaded: issuer " + s.issuer +
		", clients " + strconv.Itoa(len(s.clients)) +
		", access tokens " + s.accessTTL.String() + ", refresh tokens " + s.refreshTTL.String() +
		", registration " + onOff(!s.registration.Disabled) +
		", client metadata documents " + onOff(!opts.ClientMetadata.Disabled)
}

// deriveKey derives a 32-byte key for one purpose from the secret.
func deriveKey(secret []byte, purpose string) []byte {
	k, err := hkdf.Key(sha256.New, secret, nil, "mcpauth authserver "+purpose, 32)
	if err != nil {
		panic(err) // only for a length HKDF cannot produce
	}
	return k
}

// checkIssuer validates Options.Issuer (RFC 8414 §2).
func checkIssuer(issuer string) (*url.URL, error) {
	bad := func(why string) (*url.URL, error) {
		return nil, fmt.Errorf("mcpauth: authserver: Issuer %q %s", issuer, why)
	}
	if issuer == "" {
		return nil, errors.New("mcpauth: authserver: empty Issuer")
	}
	for i := 0; i < len(issuer); i++ {
		if c := issuer[i]; c <= 0x20 || c >= 0x7f {
			return bad("has a character that is not printable ASCII")
		}
	}
	u, err := url.Parse(issuer)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return bad("is not an absolute URL")
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(issuer, "#") || u.User != nil {
		return bad("has a query, a fragment or user information")
	}
	if strings.HasSuffix(u.Path, "/") {
		return bad("ends in a slash")
	}
	if u.RawPath != "" {
		return bad("has an escaped path")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopbackHost(u.Hostname()) {
			return bad("uses http on a host that is not loopback")
		}
	default:
		return bad("is not an https URL")
	}
	return u, nil
}

// isLoopbackHost reports whether host names this machine: localhost or a
// loopback IP literal.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// normalizeResource returns the normal form of a resource indicator (RFC
// 8707 §2): an absolute http(s) URL without fragment, scheme and host in
// lower case, without a default port or a trailing slash.
func normalizeResource(raw string) (string, bool) {
	if raw == "" || len(raw) > maxURILen {
		return "", false
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" || u.User != nil || u.Fragment != "" || strings.Contains(raw, "#") {
		return "", false
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "https" && scheme != "http" {
		return "", false
	}
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
		port = ""
	}
	if port != "" {
		host = net.JoinHostPort(host, port)
	} else if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	out := scheme + "://" + host + strings.TrimSuffix(u.EscapedPath(), "/")
	if u.RawQuery != "" || u.ForceQuery {
		out += "?" + u.RawQuery
	}
	return out, true
}

// resolveResource returns the configured resource that a request's
// resource parameter names, or the default one for an empty parameter.
func (s *Server) resolveResource(param string) (resource, *oauthError) {
	if param == "" {
		return s.resources[0], nil
	}
	norm, ok := normalizeResource(param)
	if ok {
		for _, r := range s.resources {
			if r.norm == norm {
				return r, nil
			}
		}
	}
	return resource{}, errInvalidTarget("The resource is not served by this authorization server.")
}

// Paths of the endpoints, below the issuer's path.
const (
	pathAuthorize  = "/authorize"
	pathLogin      = "/authorize/login"
	pathConsent    = "/authorize/consent"
	pathToken      = "/token"
	pathRegister   = "/register"
	pathRevoke     = "/revoke"
	pathIntrospect = "/introspect"
	pathJWKS       = "/jwks.json"
)

func (s *Server) endpoint(path string) string { return s.issuer + path }

func (s *Server) buildMetadata() ([]byte, error) {
	m := oauthex.AuthServerMeta{
		Issuer:                                     s.issuer,
		AuthorizationEndpoint:                      s.endpoint(pathAuthorize),
		TokenEndpoint:                              s.endpoint(pathToken),
		JWKSURI:                                    s.endpoint(pathJWKS),
		ScopesSupported:                            slices.Clone(s.scopes),
		ResponseTypesSupported:                     []string{"code"},
		ResponseModesSupported:                     []string{"query"},
		GrantTypesSupported:                        []string{"authorization_code", "refresh_token", "client_credentials"},
		TokenEndpointAuthMethodsSupported:          []string{"none", "client_secret_basic", "client_secret_post"},
		RevocationEndpoint:                         s.endpoint(pathRevoke),
		RevocationEndpointAuthMethodsSupported:     []string{"none", "client_secret_basic", "client_secret_post"},
		IntrospectionEndpoint:                      s.endpoint(pathIntrospect),
		IntrospectionEndpointAuthMethodsSupported:  []string{"client_secret_basic", "client_secret_post"},
		CodeChallengeMethodsSupported:              []string{"S256"},
		ClientIDMetadataDocumentSupported:          s.cimd != nil,
		AuthorizationResponseIssParameterSupported: s.emitIss,
	}
	if !s.registration.Disabled {
		m.RegistrationEndpoint = s.endpoint(pathRegister)
	}
	// RFC 8705 §3.3 and §5: certificate-bound tokens, for the clients that
	// authenticate with a certificate, and where they do.
	meta := struct {
		oauthex.AuthServerMeta
		BoundTokens bool              `json:"tls_client_certificate_bound_access_tokens,omitempty"`
		Aliases     map[string]string `json:"mtls_endpoint_aliases,omitempty"`
	}{AuthServerMeta: m, Aliases: s.mtlsAliases()}
	if s.tlsClients || s.mtlsBase != "" {
		meta.BoundTokens = true
		for _, list := range []*[]string{&meta.TokenEndpointAuthMethodsSupported, &meta.RevocationEndpointAuthMethodsSupported, &meta.IntrospectionEndpointAuthMethodsSupported} {
			*list = append(*list, authTLS, authSelfSigned)
		}
	}
	b, err := json.Marshal(meta)
	if err != nil {
		return nil, fmt.Errorf("mcpauth: authserver: metadata: %w", err)
	}
	return b, nil
}

func (s *Server) buildRoutes() {
	p := s.issuerPath
	s.authorizePath = p + pathAuthorize
	s.routes = map[string]func(http.ResponseWriter, *http.Request){
		"/.well-known/oauth-authorization-server" + p: s.cors(s.handleMetadata, "GET"),
		"/.well-known/openid-configuration" + p:       s.cors(s.handleMetadata, "GET"),
		p + "/.well-known/openid-configuration":       s.cors(s.handleMetadata, "GET"),
		p + pathJWKS:                                  s.cors(s.handleJWKS, "GET"),
		p + pathToken:                                 s.cors(s.handleToken, "POST"),
		p + pathRevoke:                                s.cors(s.handleRevoke, "POST"),
		p + pathIntrospect:                            s.cors(s.handleIntrospect, "POST"),
		p + pathAuthorize:                             s.handleAuthorize,
		p + pathLogin:                                 s.handleLogin,
		p + pathConsent:                               s.handleConsent,
	}
	if !s.registration.Disabled {
		s.routes[p+pathRegister] = s.cors(s.handleRegister, "POST")
	}
}

// ServeHTTP implements [http.Handler]. Paths it does not serve get 404.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h := s.routes[r.URL.Path]; h != nil {
		h(w, r)
		return
	}
	http.NotFound(w, r)
}

// cors lets browser-based clients call an endpoint that takes no cookies
// (metadata, keys, token, registration, revocation, introspection) from
// any origin, and answers the preflight.
func (s *Server) cors(h http.HandlerFunc, method string) http.HandlerFunc {
	allow := method + ", OPTIONS"
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		switch r.Method {
		case http.MethodOptions:
			hd := w.Header()
			hd.Set("Access-Control-Allow-Methods", allow)
			hd.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, MCP-Protocol-Version")
			hd.Set("Access-Control-Max-Age", "86400")
			hd.Set("Allow", allow)
			w.WriteHeader(http.StatusNoContent)
			return
		case method:
		case http.MethodHead:
			if method != http.MethodGet {
				s.methodNotAllowed(w, allow)
				return
			}
		default:
			s.methodNotAllowed(w, allow)
			return
		}
		h(w, r)
	}
}

func (s *Server) methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	s.writeError(w, &oauthError{code: "invalid_request", desc: "The method is not allowed.", status: http.StatusMethodNotAllowed})
}

func (s *Server) handleMetadata(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(s.metadata)
}

func (s *Server) handleJWKS(w http.ResponseWriter, r *http.Request) {
	ring, err := s.keys.current(r.Context())
	if err != nil {
		s.keyFault(r, "signing keys unavailable")
		s.writeError(w, errUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	// Short enough that a verifier sees a new key well before it signs
	// (keys are published a rotation period ahead).
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(ring.jwks)
}

// keyFault reports a store or key failure: the request fails closed.
func (s *Server) keyFault(r *http.Request, detail string) {
	s.record(r, mcpauth.Event{Kind: mcpauth.EventKeySource, Outcome: mcpauth.OutcomeFailure, Reason: "unavailable", Detail: detail})
}

// Issuer returns the issuer identifier.
func (s *Server) Issuer() string { return s.issuer }

// MetadataURL returns the URL of the server's RFC 8414 metadata, for the
// authorization_servers of a protected resource's metadata (which names
// the issuer) and for clients that are given a metadata URL.
func (s *Server) MetadataURL() string {
	u, _ := url.Parse(s.issuer)
	u.Path = "/.well-known/oauth-authorization-server" + s.issuerPath
	return u.String()
}
