package mcpauth

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/mcpauth/mcpauth/internal/header"
	"github.com/mcpauth/mcpauth/internal/jose"
)

// The JWT error classes. Each refines [ErrInvalidCredentials] (through
// [ErrExpired] or [ErrMalformed] where that is what it is), so that [Require]
// answers all of them with 401 and error="invalid_token", but with a fixed
// description of its own; the class's reason is in the audit event. The token
// never is.
var (
	errTokenExpired      error = &errorClass{msg: "mcpauth: token expired", reason: "token_expired", desc: "The access token has expired.", parent: ErrExpired}
	errTokenNotYetValid  error = &errorClass{msg: "mcpauth: token not yet valid", reason: "token_not_yet_valid", desc: "The access token is not valid yet.", parent: ErrInvalidCredentials}
	errTokenSignature    error = &errorClass{msg: "mcpauth: bad token signature", reason: "bad_signature", desc: "The access token signature is invalid.", parent: ErrInvalidCredentials}
	errTokenAlgorithm    error = &errorClass{msg: "mcpauth: token algorithm not accepted", reason: "bad_algorithm", desc: "The access token signing algorithm is not accepted.", parent: ErrInvalidCredentials}
	errTokenUnknownKey   error = &errorClass{msg: "mcpauth: token signed with an unknown key", reason: "unknown_key", desc: "The access token was signed with an unknown key.", parent: ErrInvalidCredentials}
	errTokenIssuer       error = &errorClass{msg: "mcpauth: token issuer not trusted", reason: "wrong_issuer", desc: "The access token issuer is not trusted.", parent: ErrInvalidCredentials}
	errTokenAudience     error = &errorClass{msg: "mcpauth: token audience mismatch", reason: "wrong_audience", desc: "The access token is not meant for this resource.", parent: ErrInvalidCredentials}
	errTokenBound        error = &errorClass{msg: "mcpauth: sender-constrained token used as a bearer token", reason: "bound_token", desc: "The access token is bound to a key this request does not prove.", parent: ErrInvalidCredentials}
	errTokenType         error = &errorClass{msg: "mcpauth: not an access token", reason: "wrong_token_type", desc: "The token is not an access token.", parent: ErrInvalidCredentials}
	errTokenMalformed    error = &errorClass{msg: "mcpauth: malformed token", reason: "malformed_token", desc: "The access token is malformed.", parent: ErrMalformed}
	errTokenTooLarge     error = &errorClass{msg: "mcpauth: token too large", reason: "token_too_large", desc: "The access token is too large.", parent: ErrMalformed}
	errTokenUnavailable  error = &errorClass{msg: "mcpauth: token keys unavailable", reason: "jwks_unavailable", desc: "Authentication is temporarily unavailable.", parent: ErrUnavailable}
	errRevocationsFailed error = &errorClass{msg: "mcpauth: revocation store unavailable", reason: "revocations_unavailable", desc: "Authentication is temporarily unavailable.", parent: ErrUnavailable}
)

// defaultMaxTokenSize is the largest token a JWTVerifier reads unless
// configured otherwise.
const defaultMaxTokenSize = 8 << 10

const (
	defaultCacheTTL      = 5 * time.Minute
	defaultCacheSize     = 10000
	defaultJWKSRefresh   = time.Hour
	defaultJWKSRefetch   = 5 * time.Minute
	defaultJWKSTimeout   = 10 * time.Second
	maxJSONDepth         = 16
	minHMACSecretLen     = 32
	maxDecodedJSONHeader = 2 << 10
)

// JWTVerifierOptions configures [NewJWTVerifier]. The zero value of every
// field but Issuers is the strict setting.
type JWTVerifierOptions struct {
	// Issuers are the token issuers this server trusts, each with its own
	// keys and audiences. A token is checked against the issuer its iss claim
	// names; a token naming no configured issuer is refused. At least one is
	// required.
	Issuers []TrustedIssuer

	// Leeway is how far the clocks of this server and an issuer may
	// disagree: exp, nbf and iat are checked with this much slack. Zero (the
	// default) allows none; 30 seconds to a minute is usual when an issuer's
	// clock cannot be trusted to be synchronised.
	Leeway time.Duration

	// AllowMissingExpiry accepts tokens without an exp claim. False (the
	// default) refuses them: a token that never expires can only be stopped
	// by revocation.
	AllowMissingExpiry bool

	// MaxTokenSize is the largest token, in bytes, that is read at all;
	// larger ones are refused before any decoding. Zero (the default) means
	// 8 KiB.
	MaxTokenSize int

	// CacheTTL is how long a verified token is remembered (never past its
	// exp), so that a repeated token costs a hash and a map lookup instead of
	// a signature check. Zero (the default) means 5 minutes; a negative value
	// turns the cache off. Revocation is checked on every request, cached or
	// not.
	CacheTTL time.Duration
	// CacheSize bounds how many tokens the cache holds (rounded up to a
	// multiple of 16, its number of shards). Zero (the default) means 10000.
	CacheSize int

	// Store is where revoked tokens are recorded (see [JWTVerifier.Revoke])
	// and looked up, on every request. A store that several replicas share
	// makes a revocation hold on all of them. Nil (the default) means an
	// in-memory store of this verifier's own.
	Store Store

	// JWKSRefreshInterval is how often JWKS URLs are fetched in the
	// background. Zero (the default) means one hour.
	JWKSRefreshInterval time.Duration
	// JWKSRefetchInterval is the shortest time between two fetches of a JWKS
	// URL caused by a token with an unknown kid, so that a key rotation at
	// the identity provider is picked up at once but a flood of tokens with
	// made-up kids cannot make this server hammer the provider. Zero (the
	// default) means 5 minutes.
	JWKSRefetchInterval time.Duration
	// HTTPClient fetches JWKS URLs. Nil (the default) means a client with a
	// 10-second timeout. The verifier uses a copy, and follows a redirect
	// only as JWKSURL allows (see [TrustedIssuer]) before asking the
	// client's own CheckRedirect, if any.
	HTTPClient *http.Client

	// Events receives the verifier's faults: a JWKS that cannot be fetched,
	// a revocation store that does not answer ([EventKeySource]). Nil (the
	// default) means [LogEvents] on Logger, which writes them at Error.
	Events EventSink
	// Logger is where the default event sink writes. Nil (the default)
	// means slog.Default(). It is not used when Events is set.
	Logger *slog.Logger

	// Clock returns the current time. Nil (the default) means time.Now.
	Clock func() time.Time
}

// A TrustedIssuer is one issuer whose tokens a [JWTVerifier] accepts.
//
// Set exactly one source of keys: Secret, PublicKeyPEM and PublicKeys (which
// may be combined), or JWKSURL. The algorithms a token may use follow from
// the keys: an HMAC secret verifies only HS256/384/512, an RSA key only
// RS256/384/512 and PS256/384/512, an ECDSA key only the ES algorithm of its
// curve, an Ed25519 key only EdDSA. So a token can never make a public key be
// used as an HMAC secret, and "none" is never accepted. The jku, x5u, jwk and
// x5c headers of a token are ignored: keys come from this configuration only.
type TrustedIssuer struct {
	// Issuer is the iss claim the issuer's tokens carry, compared exactly.
	// Required.
	Issuer string

	// Audiences are the aud values that name this server, usually its
	// resource URL (RFC 8707, RFC 9068 §4). A token must carry one of them;
	// a trailing slash is ignored, as go-sdk's oauthex.MatchesResource does.
	// At least one is required unless SkipAudienceCheck is set.
	Audiences []string
	// SkipAudienceCheck accepts tokens whatever their aud, even none. False
	// (the default) requires a match: without it, a token the issuer minted
	// for another service is accepted here.
	SkipAudienceCheck bool

	// Method is the principal's method. Zero (the default) means [MethodJWT];
	// use [MethodOAuth] for the access tokens of an OAuth authorization
	// server.
	Method Method

	// Secret is an HMAC key of at least 32 bytes. As RFC 7518 §3.2 requires,
	// it verifies HS256, and also HS384 from 48 bytes and HS512 from 64.
	Secret []byte
	// PublicKeyPEM holds one or more PEM blocks: "PUBLIC KEY" (PKIX), "RSA
	// PUBLIC KEY" (PKCS #1) or "CERTIFICATE". RSA keys must have at least
	// 2048 bits.
	PublicKeyPEM []byte
	// PublicKeys are keys in hand: *rsa.PublicKey, *ecdsa.PublicKey or
	// ed25519.PublicKey (for example [JWTIssuer.PublicKey]).
	PublicKeys []crypto.PublicKey
	// JWKSURL is the issuer's JSON Web Key Set (its jwks_uri), fetched at
	// start-up and then in the background; a token with an unknown kid
	// triggers a fetch, at most once per JWKSRefetchInterval. When the set
	// cannot be fetched and no fetched key matches, requests get 503. A
	// fetch follows at most 3 redirects, each only to a URL that would be
	// accepted here, and never from https to http.
	JWKSURL string
	// AllowHTTPJWKS accepts a JWKSURL with the http scheme on a host that
	// is not loopback, for a provider reachable only that way inside a
	// trusted network. False (the default) requires https there: anyone who
	// can change the key set in transit can sign tokens this server accepts.
	AllowHTTPJWKS bool

	// RequireAccessTokenType accepts only tokens whose typ header is
	// "at+jwt" (RFC 9068 §4), so that no other JWT of the issuer's, such as
	// an OpenID Connect ID token whose aud happens to match, passes as an
	// access token here. False (the default) also accepts tokens typed "JWT"
	// or untyped, as most identity providers issue them; tokens typed as
	// anything else (a DPoP proof, a logout token) are refused either way.
	// Set it for issuers that type their access tokens, such as
	// [JWTIssuer].
	RequireAccessTokenType bool

	// AcceptBoundTokens accepts tokens that carry a cnf claim as plain
	// bearer tokens, without proof of the key they are bound to. False (the
	// default) requires the proof: a token bound to a client certificate
	// (RFC 8705, cnf.x5t#S256) is accepted only from a connection that
	// presents that certificate (see [MTLS]), and a token bound to anything
	// else (a DPoP key, RFC 9449) is refused. A bound token is meant to be
	// useless to whoever merely holds it.
	AcceptBoundTokens bool

	// Algorithms restricts the accepted algorithms further. Nil (the
	// default) means every algorithm the keys can verify.
	Algorithms []string

	// RoleClaims are the claims that hold the principal's roles, as
	// strings or arrays of strings. Each name is first looked up as a
	// top-level claim (Auth0's namespaced claims, such as
	// "https://example.com/roles", contain dots), then as a dot-separated
	// path into nested objects (Keycloak's "realm_access.roles"). Nil (the
	// default) means "role" and "roles" (Entra ID).
	RoleClaims []string
	// ScopeClaims are the claims that hold the principal's scopes: a string
	// is split at spaces (RFC 8693 scope), an array is taken as it is. Nil
	// (the default) means "scope", "scp" (Okta, Entra ID) and "permissions"
	// (Auth0 RBAC, and the tutorial's tokens).
	ScopeClaims []string
}

// A JWTVerifier authenticates requests that carry a JWT as "Authorization:
// Bearer <token>" (RFC 6750, RFC 9068). It is an [Authenticator]: a bearer
// value that is not shaped like a JWT is left to other authenticators (such
// as [APIKeys]), so the two can be combined in either order.
//
// A JWTVerifier is safe for concurrent use. Call Close to stop the
// background refresh of JWKS URLs.
type JWTVerifier struct {
	issuers    map[string]*trustedIssuer
	leeway     time.Duration
	allowNoExp bool
	maxSize    int
	cache      *hashCache[*cacheEntry] // verified tokens by SHA-256; nil: off
	cacheTTL   time.Duration
	store      Store
	// sharedStore is true when store was given, not made here.
	sharedStore bool
	clock       func() time.Time // opts.Clock: nil unless one was given
	now         func() time.Time
	events      EventSink
	cancel      context.CancelFunc
	headers     headerMemo
}

// headerMemo remembers parsed JOSE headers by their encoded form. An
// issuer's tokens share one header (alg, typ, kid), so a first-seen token
// usually skips decoding it. Only headers that parsed are kept, in bounded
// memory: a full memo is emptied, so a flood of made-up headers costs
// nothing but the memo's benefit.
type headerMemo struct {
	mu sync.RWMutex
	m  map[string]jwtHeader
}

const headerMemoSize = 64

func (h *headerMemo) get(encoded string) (jwtHeader, bool) {
	h.mu.RLock()
	hdr, ok := h.m[encoded]
	h.mu.RUnlock()
	return hdr, ok
}

func (h *headerMemo) put(encoded string, hdr jwtHeader) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil || len(h.m) >= headerMemoSize {
		h.m = make(map[string]jwtHeader, headerMemoSize)
	}
	// A copy, so that the memo does not keep the whole token alive.
	h.m[strings.Clone(encoded)] = hdr
}

// NewJWTVerifier returns a verifier for the configured issuers. It returns an
// error for a configuration that would be unsafe or cannot work: no issuer,
// an issuer without keys or audiences, an HMAC secret shorter than 32 bytes,
// an RSA key shorter than 2048 bits, an algorithm the keys cannot verify.
//
// An issuer's JWKS URL is fetched before NewJWTVerifier returns. If that
// fails, the failure is logged and the verifier is returned all the same: the
// set is fetched again in the background and when a token needs it, and
// until then the issuer's tokens get 503, never a pass.
//
// The verifier keeps copies of what it reads from opts, keys included (a
// public key is a pointer or a slice the caller still holds): changing opts,
// its slices or its keys afterwards changes nothing, and a configuration
// cannot be widened behind the reviewer's back. HTTPClient is copied too;
// its Transport and Jar, like Store and Logger, are used as given.
func NewJWTVerifier(opts JWTVerifierOptions) (*JWTVerifier, error) {
	if len(opts.Issuers) == 0 {
		return nil, errors.New("mcpauth: JWT verifier: no trusted issuer")
	}
	if opts.Leeway < 0 || opts.MaxTokenSize < 0 || opts.CacheSize < 0 || opts.JWKSRefreshInterval < 0 || opts.JWKSRefetchInterval < 0 {
		return nil, errors.New("mcpauth: JWT verifier: negative option")
	}
	v := &JWTVerifier{
		issuers:    make(map[string]*trustedIssuer, len(opts.Issuers)),
		leeway:     opts.Leeway,
		allowNoExp: opts.AllowMissingExpiry,
		maxSize:    opts.MaxTokenSize,
		store:      opts.Store,
		now:        opts.Clock,
		clock:      opts.Clock,
		events:     sinkFor(opts.Events, opts.Logger),
	}
	if v.maxSize == 0 {
		v.maxSize = defaultMaxTokenSize
	}
	if v.now == nil {
		v.now = time.Now
	}
	if v.store == nil {
		v.store = newMemoryStore(v.now)
	} else {
		// A Store given may be written by others (another replica,
		// an authorization server's RevokeToken in another process):
		// open requests must look at it again from time to time.
		v.sharedStore = true
	}
	if opts.CacheTTL >= 0 {
		ttl, size := opts.CacheTTL, opts.CacheSize
		if ttl == 0 {
			ttl = defaultCacheTTL
		}
		if size == 0 {
			size = defaultCacheSize
		}
		v.cache, v.cacheTTL = newHashCache[*cacheEntry](size), ttl
	}
	ctx, cancel := context.WithCancel(context.Background())
	v.cancel = cancel
	for i := range opts.Issuers {
		ti := &opts.Issuers[i]
		if _, dup := v.issuers[ti.Issuer]; dup {
			cancel()
			return nil, fmt.Errorf("mcpauth: JWT verifier: issuer %q configured twice", ti.Issuer)
		}
		iss, err := newTrustedIssuer(ctx, ti, &opts, v.events)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("mcpauth: JWT verifier: issuer %q: %w", ti.Issuer, err)
		}
		v.issuers[ti.Issuer] = iss
	}
	return v, nil
}

// Close stops the background refresh of JWKS URLs. The verifier keeps
// working with the keys it has.
func (v *JWTVerifier) Close() error {
	v.cancel()
	return nil
}

// Authenticate implements [Authenticator].
func (v *JWTVerifier) Authenticate(r *http.Request) (*Principal, error) {
	if v == nil {
		return nil, failure(MethodJWT, ErrUnavailable, "", "not configured")
	}
	token, jwt, ok, err := v.bearer(r.Header)
	if err != nil {
		return nil, err
	}
	if !ok || !(jwt || unsecuredJWT(token)) {
		return nil, ErrNoCredentials
	}
	return v.verifyRequest(r, token)
}

// verifyRequest is Verify for a token that came with r: a token bound to a
// client certificate is checked against r's (RFC 8705 §3).
func (v *JWTVerifier) verifyRequest(r *http.Request, token string) (*Principal, error) {
	p, x5t, err := v.verify1(r.Context(), token)
	if err != nil || x5t == "" {
		return p, err
	}
	if err := checkBoundCertificate(r.TLS, x5t); err != nil {
		return nil, failure(p.Method, err, p.KeyID, "certificate binding")
	}
	return p, nil
}

// unsecuredJWT reports whether s is an unsecured JWT (RFC 7519 §6): two
// segments and an empty signature, the first a JOSE header. Such a token is
// this authenticator's to refuse, with the reason (alg "none"), rather than
// another's to mistake for an API key; requiring a decodable header keeps an
// API key that happens to end in a dot out of it.
func unsecuredJWT(s string) bool {
	if len(s) < 4 || s[len(s)-1] != '.' || !header.LooksLikeJWT(s+"A") {
		return false
	}
	raw, err := jose.DecodeSegment(s[:strings.IndexByte(s, '.')], maxDecodedJSONHeader)
	if err != nil {
		return false
	}
	_, err = parseHeader(raw)
	return err == nil
}

// bearer extracts a bearer token, measuring its size before anything else,
// and reports whether it looks like a JWT (header.LooksLikeJWT), found out
// in the same pass over the token that checks it.
func (v *JWTVerifier) bearer(h http.Header) (token string, jwt, ok bool, err error) {
	token, present, ok, _, jwt := header.BearerJWT(h)
	if ok {
		if len(token) > v.maxSize {
			return "", false, false, failure(MethodJWT, errTokenTooLarge, "", "")
		}
		return token, jwt, true, nil
	}
	if !present || len(h[header.Authorization]) != 1 {
		return "", false, false, nil
	}
	// header.Bearer refuses values longer than header.MaxCredentialLen. Tell
	// an oversized bearer token apart from other schemes, and accept a long
	// one when MaxTokenSize allows it.
	val := h[header.Authorization][0]
	if len(val) < 7 || !strings.EqualFold(val[:7], "bearer ") {
		return "", false, false, nil
	}
	token = strings.Trim(val[7:], " \t")
	if len(token) > v.maxSize {
		return "", false, false, failure(MethodJWT, errTokenTooLarge, "", "")
	}
	if len(token) <= header.MaxCredentialLen || !header.LooksLikeJWT(token) {
		return "", false, false, nil
	}
	return token, true, true, nil
}

// Verify checks a token and returns its principal. Its errors wrap the
// package's error classes (see [errTokenExpired] and its siblings), and the
// error text never contains the token.
//
// Verify is what Authenticate checks; use it directly to check a token that
// did not come in an HTTP header. A token bound to a client certificate is
// refused by Verify, which has no connection to check it against.
func (v *JWTVerifier) Verify(ctx context.Context, token string) (*Principal, error) {
	p, x5t, err := v.verify1(ctx, token)
	if err == nil && x5t != "" {
		return nil, failure(p.Method, errTokenBound, p.KeyID, "no connection")
	}
	return p, err
}

// verify1 checks a token once (from the cache, if it was checked before)
// and returns the thumbprint of the certificate it is bound to, if any.
func (v *JWTVerifier) verify1(ctx context.Context, token string) (*Principal, string, error) {
	if len(token) > v.maxSize {
		return nil, "", failure(MethodJWT, errTokenTooLarge, "", "")
	}
	now := v.now()
	var sum [32]byte
	if v.cache != nil {
		// The token is only read; hashing it in place spares a copy.
		sum = sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token)))
		if e, ok := v.cache.get(&sum, now.UnixNano()); ok {
			if err := v.checkRevoked(ctx, e.revocationID, e.principal); err != nil {
				return nil, "", err
			}
			return e.principal, e.x5t, nil
		}
	}
	vt, err := v.verify(token, now, true)
	if err != nil {
		return nil, "", err
	}
	p := vt.principal
	revID := vt.revocationID(token)
	if err := v.checkRevoked(ctx, revID, p); err != nil {
		return nil, "", err
	}
	// Set before the principal is cached and shared: what an open request
	// of the token asks to learn of a revocation (stream.go).
	p.state = &jwtState{store: v.store, id: revID, sharedStore: v.sharedStore}
	p.grace = v.leeway
	p.clock = v.clock
	if v.cache != nil {
		p.seal()
		until := now.Add(v.cacheTTL)
		if !p.Expiry.IsZero() {
			if exp := p.Expiry.Add(v.leeway); exp.Before(until) {
				until = exp
			}
		}
		v.cache.put(&sum, &cacheEntry{principal: p, revocationID: revID, x5t: vt.x5t}, until.UnixNano(), now.UnixNano())
	}
	return p, vt.x5t, nil
}

// Revoke makes a token stop working at once, on this verifier and on every
// verifier that shares its [Store]. The token must be one this
// verifier accepts (a forged token revokes nothing); an expired token needs
// no revocation, and Revoke returns nil for it.
func (v *JWTVerifier) Revoke(ctx context.Context, token string) error {
	now := v.now()
	vt, err := v.verify(token, now, false)
	if err != nil {
		return err
	}
	// The record is needed until the token expires, leeway included; a
	// token without exp needs it for good (no ttl).
	var ttl time.Duration
	if exp := vt.principal.Expiry; !exp.IsZero() {
		if ttl = exp.Add(v.leeway).Sub(now); ttl <= 0 {
			return nil
		}
	}
	if err := v.store.Set(ctx, revokedKey(vt.revocationID(token)), nil, ttl); err != nil {
		return fmt.Errorf("mcpauth: revoking a token: %w", err)
	}
	notifyRevoked()
	if v.cache != nil {
		sum := sha256.Sum256([]byte(token))
		v.cache.remove(&sum)
	}
	return nil
}

func (v *JWTVerifier) checkRevoked(ctx context.Context, id string, p *Principal) error {
	_, err := v.store.Get(ctx, revokedKey(id))
	revoked := err == nil
	if errors.Is(err, ErrNotFound) {
		err = nil
	}
	if err != nil {
		emit(ctx, v.events, Event{Kind: EventKeySource, Outcome: OutcomeFailure, Reason: reasonRevocationsDown,
			Method: p.Method, Issuer: p.Issuer, KeyID: p.KeyID})
		return failure(p.Method, errRevocationsFailed, p.KeyID, "revocation store unavailable")
	}
	if revoked {
		return failure(p.Method, ErrRevoked, p.KeyID, "")
	}
	return nil
}

// verifiedToken is a token whose signature and claims passed.
type verifiedToken struct {
	principal *Principal
	jti       string
	x5t       string // cnf.x5t#S256: the certificate the token is bound to
}

// revocationID names a token in the revocation records: its issuer and jti when
// it has one (RFC 7519 §4.1.7 makes the pair unique), else the SHA-256 of its
// signing input. The signature is left out because an ECDSA signature can be
// altered into another valid one (s to n-s): a revoked token must not come
// back under a new name.
func (vt *verifiedToken) revocationID(token string) string {
	if vt.jti != "" {
		return jtiRevocationID(vt.principal.Issuer, vt.jti)
	}
	signed := token[:strings.LastIndexByte(token, '.')]
	sum := sha256.Sum256([]byte(signed))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// jwtHeader is the JOSE header (RFC 7515 §4), read from a map so that names
// are matched exactly (encoding/json matches struct fields without regard to
// case, which would let "ALG" stand in for "alg").
type jwtHeader struct {
	alg, kid string
	typ      tokenType
}

// tokenType is what a token's typ header says it is.
type tokenType uint8

const (
	typUntyped     tokenType = iota // no typ, or "JWT": any kind of JWT
	typAccessToken                  // "at+jwt": an RFC 9068 access token
	typOther                        // another kind of JWT: a DPoP proof, a logout token, …
)

// verify checks token's signature and claims. checkTime is false only to
// revoke a token, whose expiry does not matter then.
func (v *JWTVerifier) verify(token string, now time.Time, checkTime bool) (*verifiedToken, error) {
	fail := func(class error, detail string) (*verifiedToken, error) {
		return nil, failure(MethodJWT, class, "", detail)
	}
	if len(token) > v.maxSize {
		return fail(errTokenTooLarge, "")
	}
	dot1 := strings.IndexByte(token, '.')
	dot2 := strings.LastIndexByte(token, '.')
	// An empty signature is let through to here so that an unsecured token
	// (alg "none") is refused as such, below.
	if dot1 <= 0 || dot2 == dot1 || strings.IndexByte(token[dot1+1:dot2], '.') >= 0 {
		return fail(errTokenMalformed, "not three segments")
	}

	// The header.
	hdr, ok := v.headers.get(token[:dot1])
	if !ok {
		rawHeader, err := jose.DecodeSegment(token[:dot1], maxDecodedJSONHeader)
		if err != nil {
			return fail(errTokenMalformed, "bad header encoding")
		}
		if hdr, err = parseHeader(rawHeader); err != nil {
			return fail(errTokenMalformed, err.Error())
		}
		v.headers.put(token[:dot1], hdr)
	}
	if hdr.alg == "none" || hdr.alg == "" {
		return fail(errTokenAlgorithm, "alg none")
	}
	if hdr.typ == typOther {
		return fail(errTokenType, "unexpected typ")
	}

	// The claims, read before the signature is checked because they name
	// the issuer, and so the keys. They are attacker-controlled until then:
	// the size limit bounds them, and jose.DecodeObject bounds their nesting.
	rawClaims, err := jose.DecodeSegment(token[dot1+1:dot2], v.maxSize)
	if err != nil {
		return fail(errTokenMalformed, "bad claims encoding")
	}
	claims, err := jose.DecodeObject(rawClaims, maxJSONDepth)
	if err != nil {
		return fail(errTokenMalformed, err.Error())
	}
	issClaim, ok := claims["iss"].(string)
	if !ok {
		return fail(errTokenIssuer, "no iss")
	}
	iss := v.issuers[issClaim]
	if iss == nil {
		return fail(errTokenIssuer, "untrusted iss")
	}
	keyID := hdr.kid
	if keyID == "" {
		keyID, _ = claims["jti"].(string)
	}
	keyID = auditKeyID(keyID)
	fail = func(class error, detail string) (*verifiedToken, error) {
		return nil, failure(iss.method, class, keyID, detail)
	}

	if iss.requireAccessTokenType && hdr.typ != typAccessToken {
		return fail(errTokenType, "typ not at+jwt")
	}

	// The signature.
	method := iss.algorithm(hdr.alg)
	if method == nil {
		return fail(errTokenAlgorithm, "algorithm not allowed")
	}
	sig, err := jose.DecodeSegment(token[dot2+1:], v.maxSize)
	if err != nil {
		return fail(errTokenMalformed, "bad signature encoding")
	}
	if len(sig) == 0 {
		return fail(errTokenSignature, "no signature")
	}
	if detail, class := iss.verifySignature(method, hdr, token[:dot2], sig); class != nil {
		return fail(class, detail)
	}

	// The claims.
	var exp time.Time
	switch t, present, ok := jose.NumericDate(claims, "exp"); {
	case !ok:
		return fail(errTokenMalformed, "bad exp")
	case !present && !v.allowNoExp:
		return fail(errTokenMalformed, "no exp")
	case present:
		exp = t
		if checkTime && !now.Before(t.Add(v.leeway)) {
			return fail(errTokenExpired, "")
		}
	}
	if t, present, ok := jose.NumericDate(claims, "nbf"); !ok {
		return fail(errTokenMalformed, "bad nbf")
	} else if present && checkTime && now.Add(v.leeway).Before(t) {
		return fail(errTokenNotYetValid, "nbf in the future")
	}
	if t, present, ok := jose.NumericDate(claims, "iat"); !ok {
		return fail(errTokenMalformed, "bad iat")
	} else if present && checkTime && now.Add(v.leeway).Before(t) {
		return fail(errTokenNotYetValid, "iat in the future")
	}
	if !iss.skipAudience {
		aud, ok := jose.Audience(claims["aud"])
		if !ok {
			return fail(errTokenMalformed, "bad aud")
		}
		if len(aud) == 0 {
			return fail(errTokenAudience, "no aud")
		}
		if !iss.matchesAudience(aud) {
			return fail(errTokenAudience, "aud mismatch")
		}
	}
	var x5t string
	if cnf, bound := claims["cnf"]; bound && !iss.acceptBound {
		// A sender-constrained token (RFC 8705 mTLS, RFC 9449 DPoP) is
		// good only with proof of its key; accepting it as a bearer token
		// would undo the binding the issuer put on it. The proof of a
		// certificate is the connection's, checked per request.
		if x5t, ok = boundThumbprint(cnf); !ok {
			return fail(errTokenBound, "cnf claim")
		}
	}
	sub, _ := claims["sub"].(string)
	if sub == "" {
		return fail(errTokenMalformed, "no sub")
	}
	jti, _ := claims["jti"].(string)
	clientID, _ := claims["client_id"].(string)
	if clientID == "" {
		// OpenID Connect and several providers (Keycloak, Entra ID v2) name
		// the client in azp.
		clientID, _ = claims["azp"].(string)
	}
	p := &Principal{
		Subject:  sub,
		Method:   iss.method,
		Issuer:   iss.issuer,
		ClientID: clientID,
		Roles:    collectClaims(claims, iss.roleClaims, false),
		Scopes:   collectClaims(claims, iss.scopeClaims, true),
		Expiry:   exp,
		Claims:   claims,
		KeyID:    keyID,
	}
	return &verifiedToken{principal: p, jti: jti, x5t: x5t}, nil
}

// boundThumbprint reads the x5t#S256 of a cnf claim. ok is false for a cnf
// that binds the token to anything else as well (a DPoP key, RFC 9449),
// which no request here can prove.
func boundThumbprint(cnf any) (string, bool) {
	m, isObject := cnf.(map[string]any)
	if !isObject || len(m) != 1 {
		return "", false
	}
	x5t, ok := m["x5t#S256"].(string)
	if !ok || base64.RawURLEncoding.DecodedLen(len(x5t)) != sha256.Size {
		return "", false
	}
	return x5t, true
}

// auditKeyID bounds a kid or jti before it goes to the audit log: it comes
// from the token and is not secret, but it is attacker-chosen.
func auditKeyID(s string) string {
	const max = 64
	if len(s) > max {
		s = s[:max]
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			return "(non-printable)"
		}
	}
	return s
}

// The header parameters this package understands. Any other is ignored,
// unless crit names it (RFC 7515 §4.1.11). jku, x5u, jwk and x5c are among
// the ignored: a token does not get to say where its key comes from.
func parseHeader(raw []byte) (jwtHeader, error) {
	var h jwtHeader
	m, err := jose.DecodeObject(raw, maxJSONDepth)
	if err != nil {
		return h, err
	}
	if _, ok := m["crit"]; ok {
		// This package implements no extension, so any crit is one it does
		// not understand, and the token must be refused.
		return h, errors.New("crit header")
	}
	alg, ok := m["alg"].(string)
	if !ok {
		return h, errors.New("no alg")
	}
	h.alg = alg
	if kid, ok := m["kid"]; ok {
		if h.kid, ok = kid.(string); !ok {
			return h, errors.New("bad kid")
		}
	}
	if typ, ok := m["typ"]; ok {
		s, ok := typ.(string)
		if !ok {
			return h, errors.New("bad typ")
		}
		// A JWT meant for something else (a DPoP proof, a logout token) must
		// not be usable as an access token (RFC 8725 §3.11). Access tokens
		// are typed "JWT" or, by RFC 9068, "at+jwt".
		switch strings.ToLower(s) {
		case "jwt", "application/jwt":
		case "at+jwt", "application/at+jwt":
			h.typ = typAccessToken
		default:
			h.typ = typOther
		}
	}
	return h, nil
}

// collectClaims gathers the strings of the named claims, without
// duplicates. split says whether a string value is a space-delimited list
// (scope) or one value (role).
func collectClaims(claims map[string]any, names []string, split bool) []string {
	var out []string
	add := func(s string) {
		if s == "" {
			return
		}
		for _, o := range out {
			if o == s {
				return
			}
		}
		out = append(out, s)
	}
	for _, name := range names {
		switch val := lookupClaim(claims, name).(type) {
		case string:
			if split {
				// At spaces only (RFC 6749 §3.3): another white space is
				// part of a scope, as the issuer read it.
				for s := range strings.SplitSeq(val, " ") {
					add(s)
				}
			} else {
				add(val)
			}
		case []any:
			for _, e := range val {
				if s, ok := e.(string); ok {
					add(s)
				}
			}
		}
	}
	return out
}

// lookupClaim finds a claim by its name or, failing that, by a dot-separated
// path into nested objects.
func lookupClaim(claims map[string]any, name string) any {
	if v, ok := claims[name]; ok {
		return v
	}
	if !strings.Contains(name, ".") {
		return nil
	}
	var cur any = claims
	for part := range strings.SplitSeq(name, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[part]
	}
	return cur
}
