package mcpauth

import (
	"errors"
	"net/http"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Method says how a caller proved who it is.
type Method string

// The authentication methods.
const (
	MethodAPIKey Method = "apikey"
	MethodJWT    Method = "jwt"
	MethodOAuth  Method = "oauth"
	MethodMTLS   Method = "mtls"
)

// A Principal is the authenticated caller of one request.
//
// Authenticators may hand the same *Principal to many requests (an API key's
// principal is built once, at start-up), so callers must treat it, and the
// slices and maps it holds, as read-only.
type Principal struct {
	// Subject identifies the caller: an API key's configured subject, a
	// token's sub claim, a certificate's subject.
	Subject string
	// Method is how the caller authenticated.
	Method Method
	// Issuer is who vouched for the subject, for example a token's iss claim.
	// It is empty for credentials the server checks itself (API keys).
	Issuer string
	// ClientID is the OAuth client the credential was issued to, if any.
	ClientID string
	// Roles and Scopes are what the caller may do; see the RBAC guard.
	Roles  []string
	Scopes []string
	// Expiry is when the credential stops being valid. Zero means it does not
	// expire by itself (it can still be revoked).
	Expiry time.Time
	// Claims holds method-specific attributes, for example a token's claims.
	Claims map[string]any
	// KeyID is a public, non-secret identifier of the credential that was
	// presented (an API key's fingerprint, a token's kid or jti). Audit events
	// carry it.
	KeyID string

	// info is the go-sdk view of this principal, built once by authenticators
	// that reuse a principal across requests. Nil means build per request.
	info *auth.TokenInfo
	// reported is when Require last reported a success of this principal
	// in full, in Unix nanoseconds, read and written atomically.
	reported int64
	// state tells an open request whether the credential was revoked after
	// it was accepted (see stream.go); nil: it cannot be. Set once, before
	// the principal is shared.
	state credentialState
	// grace is how long after Expiry the credential is still accepted (a
	// verifier's leeway for clock skew); open requests end after it.
	grace time.Duration
	// clock is the clock of the authenticator that judged Expiry, when it
	// is not time.Now (tests inject one); nil: time.Now.
	clock func() time.Time
}

// UserID is the identity go-sdk binds sessions to (TokenInfo.UserID): a
// session opened by one user is refused to another. Credentials of the same
// method, issuer and subject share it, so a rotated key or a refreshed token
// keeps its session.
func (p *Principal) UserID() string {
	if p.Issuer == "" {
		return string(p.Method) + ":" + p.Subject
	}
	// An issuer identifier has no fragment (RFC 8414 §2), so '#' cannot be
	// part of it and the two halves cannot be confused.
	return string(p.Method) + ":" + p.Issuer + "#" + p.Subject
}

// HasScope reports whether the principal was granted the scope.
func (p *Principal) HasScope(scope string) bool {
	for _, s := range p.Scopes {
		if s == scope {
			return true
		}
	}
	return false
}

// tokenInfoKey is the key of the principal in auth.TokenInfo.Extra.
const tokenInfoKey = "mcpauth.principal"

// tokenInfo returns the go-sdk view of p.
func (p *Principal) tokenInfo() *auth.TokenInfo {
	if p.info != nil {
		return p.info
	}
	return newTokenInfo(p)
}

func newTokenInfo(p *Principal) *auth.TokenInfo {
	return &auth.TokenInfo{
		Scopes:     p.Scopes,
		Expiration: p.Expiry,
		UserID:     p.UserID(),
		Extra:      map[string]any{tokenInfoKey: p},
	}
}

// seal builds the go-sdk view once, for a principal that many requests share.
// Call it before the principal is published to other goroutines.
func (p *Principal) seal() *Principal {
	p.info = newTokenInfo(p)
	return p
}

// PrincipalFromRequest returns the principal of the MCP request, as the
// middleware attached it to the HTTP request that carried it, or nil if the
// request was not authenticated by mcpauth.
//
// This is the accessor for tool, prompt and resource handlers and for MCP
// middleware. It reads req.Extra.TokenInfo, which go-sdk fills from the
// current HTTP request, so a credential rotated or downgraded within a session
// is seen at once.
func PrincipalFromRequest(req mcp.Request) *Principal {
	if req == nil {
		return nil
	}
	extra := req.GetExtra()
	if extra == nil || extra.TokenInfo == nil {
		return nil
	}
	p, _ := extra.TokenInfo.Extra[tokenInfoKey].(*Principal)
	return p
}

// PrincipalFromHTTPRequest returns the principal that [Require] attached to r,
// or nil. It is for plain HTTP handlers behind the middleware; MCP handlers use
// [PrincipalFromRequest].
func PrincipalFromHTTPRequest(r *http.Request) *Principal {
	if r == nil {
		return nil
	}
	p, _ := r.Context().Value(principalKey{}).(*Principal)
	return p
}

// principalKey is unexported so that no code outside this package can put a
// principal on a request.
type principalKey struct{}

// An Authenticator checks one kind of credential.
//
// Authenticate returns the request's principal, or an error. It returns an
// error wrapping [ErrNoCredentials] when the request carries no credential of
// its kind, so that [Require] can try the next authenticator; any other result
// decides the request. Errors should wrap one of the package's error classes
// ([ErrInvalidCredentials], [ErrExpired], [ErrRevoked], [ErrUnavailable], …):
// their fixed descriptions are what the client and the audit log see. The rest
// of an error's text is never written to either.
type Authenticator interface {
	Authenticate(r *http.Request) (*Principal, error)
}

// AuthenticatorFunc adapts a function to the [Authenticator] interface.
type AuthenticatorFunc func(r *http.Request) (*Principal, error)

// Authenticate calls f(r).
func (f AuthenticatorFunc) Authenticate(r *http.Request) (*Principal, error) { return f(r) }

// An errorClass is a failure with a fixed reason and description, both safe
// to send to a client and to write to a log. A class may refine a broader
// one: errors.Is(ErrExpired, ErrInvalidCredentials) is true.
type errorClass struct {
	msg    string // Error text, for Go callers
	reason string // short machine-readable reason, for audit events
	desc   string // error_description on the wire
	parent error
}

func (e *errorClass) Error() string { return e.msg }
func (e *errorClass) Unwrap() error { return e.parent }

// The error classes. Authenticators wrap them with %w; [Require] maps them to
// HTTP responses:
//
//   - [ErrNoCredentials]: 401 with a bare Bearer challenge.
//   - [ErrInvalidCredentials] and its refinements ([ErrExpired], [ErrRevoked],
//     [ErrMalformed]): 401 with error="invalid_token".
//   - [ErrForbidden]: 403.
//   - [ErrRateLimited]: 429, with Retry-After for a [RateLimitError].
//   - [ErrUnavailable]: 503; a credential source that is down never lets a
//     request through.
//
// An error that wraps none of them is treated as [ErrInvalidCredentials].
var (
	ErrNoCredentials      error = &errorClass{msg: "mcpauth: no credentials", reason: "no_credentials", desc: "Authentication is required."}
	ErrInvalidCredentials error = &errorClass{msg: "mcpauth: invalid credentials", reason: "invalid", desc: "The credentials are not recognised."}
	ErrExpired            error = &errorClass{msg: "mcpauth: credentials expired", reason: "expired", desc: "The credentials have expired.", parent: ErrInvalidCredentials}
	ErrRevoked            error = &errorClass{msg: "mcpauth: credentials revoked", reason: "revoked", desc: "The credentials have been revoked.", parent: ErrInvalidCredentials}
	ErrMalformed          error = &errorClass{msg: "mcpauth: malformed credentials", reason: "malformed", desc: "The credentials are malformed.", parent: ErrInvalidCredentials}
	ErrForbidden          error = &errorClass{msg: "mcpauth: forbidden", reason: "forbidden", desc: "The caller is not allowed to do this."}
	ErrRateLimited        error = &errorClass{msg: "mcpauth: rate limited", reason: "rate_limited", desc: "Too many requests."}
	ErrUnavailable        error = &errorClass{msg: "mcpauth: credential source unavailable", reason: "unavailable", desc: "Authentication is temporarily unavailable."}
)

// classOf returns the most specific error class that err wraps.
func classOf(err error) *errorClass {
	var c *errorClass
	if errors.As(err, &c) {
		return c
	}
	return ErrInvalidCredentials.(*errorClass)
}

// ScopeError is an authorization failure for want of OAuth scopes. [Require]
// answers it with 403 and error="insufficient_scope", naming the scopes, so
// that a client can ask for them (step-up authorization).
type ScopeError struct {
	Required []string
}

func (e *ScopeError) Error() string { return "mcpauth: insufficient scope" }
func (e *ScopeError) Unwrap() error { return ErrForbidden }

// RateLimitError refuses a request for coming too often. [Require] answers it
// with 429 and a Retry-After header of RetryAfter, rounded up to whole
// seconds (at least 1).
type RateLimitError struct {
	RetryAfter time.Duration
}

func (e *RateLimitError) Error() string { return "mcpauth: rate limited" }
func (e *RateLimitError) Unwrap() error { return ErrRateLimited }

// A refusal is how this package's parts report a refused request. Its class
// decides the response (status, code, challenge, fixed description); reason,
// method, keyID and detail go to the [Event], and are fixed or public
// strings, never a credential or a library's error text. msg, when set, is
// the text a caller may see (the guard's tool errors name what a rule
// requires, never anything about other callers).
type refusal struct {
	class      error
	reason     string // for the event; empty means the class's
	msg        string
	method     Method
	keyID      string
	detail     string
	scope      *ScopeError   // for a refusal a scope step-up would fix
	retryAfter time.Duration // for a rate limit
}

func (e *refusal) Error() string {
	if e.msg != "" {
		return e.msg
	}
	return "mcpauth: " + string(e.method) + ": " + e.class.Error()
}

func (e *refusal) Unwrap() []error {
	if e.scope != nil {
		return []error{e.class, e.scope}
	}
	return []error{e.class}
}

// failure is an authenticator's refusal.
func failure(method Method, class error, keyID, detail string) error {
	return &refusal{method: method, keyID: keyID, detail: detail, class: class}
}
