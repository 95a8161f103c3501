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
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpauth/mcpauth/internal/header"
	"github.com/mcpauth/mcpauth/internal/jose"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
)

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
		p, err := st.jwt.verifyRequest(r, token)
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
