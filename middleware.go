package mcpauth

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mcpauth/mcpauth/internal/bridge"
	"github.com/mcpauth/mcpauth/internal/header"
)

// RequireOptions configures [Require]. The zero value is the strict setting.
type RequireOptions struct {
	// ResourceMetadataURL is the URL of this server's OAuth protected resource
	// metadata (RFC 9728). When set, every 401 and 403 challenge carries it as
	// resource_metadata, which is how MCP clients discover the authorization
	// server. Empty (the default) leaves it out.
	ResourceMetadataURL string

	// Resource is this server as an OAuth protected resource, whose
	// metadata document the server serves (see [ProtectedResource]). When
	// set, every 401 and 403 challenge carries its MetadataURL as
	// resource_metadata, and every 401 its scope hint, so that the
	// challenges and the document cannot disagree; it takes precedence over
	// ResourceMetadataURL (a differing ResourceMetadataURL is ignored, with
	// an EventConfiguration event). Nil (the default) means
	// ResourceMetadataURL alone.
	Resource *ProtectedResource

	// Events receives one security [Event] for every authentication
	// decision. Nil (the default) means [LogEvents] on Logger.
	Events EventSink

	// Logger is where the default event sink writes: failures at Warn, the
	// first success of a credential within SuccessEventInterval at Info, and
	// its repeats at Debug. The events carry the method, the subject or the
	// failure's reason, the remote address and the credential's public
	// KeyID; never a credential. Nil (the default) means slog.Default(),
	// looked up at each event. It is not used when Events is set.
	Logger *slog.Logger

	// SuccessEventInterval is how long a successful authentication of one
	// credential (method, subject and key ID) is reported as a repeat
	// ([Event].Repeat, written at Debug by the log sink) after it was
	// reported in full. Zero (the default) means one minute; a negative
	// value reports every success in full. Failures are always reported in
	// full.
	SuccessEventInterval time.Duration

	// RevocationCheckInterval is how often a request that is still open (a
	// stream) is checked again for a revocation that another process may
	// have recorded: a JWT revoked in a Store that several replicas share.
	// Expiry, and revocations made in this process (APIKeys.Revoke,
	// JWTVerifier.Revoke, RevokeToken), end open requests at once,
	// whatever the interval. Zero (the default) or a negative value means
	// two seconds; a revocation elsewhere then ends a stream within twice
	// the interval.
	RevocationCheckInterval time.Duration

	// Lockout refuses, with 429 and Retry-After, the source addresses and
	// credentials that failed to authenticate too often (see [Lockout]).
	// Nil (the default) means a Lockout of this middleware alone with the
	// default thresholds of [LockoutOptions], reporting to Events; one
	// made with negative SourceFailures and CredentialFailures turns
	// lockout off.
	Lockout *Lockout

	// RateLimit is each principal's rate limit, SourceRateLimit each
	// source address's for requests without valid credentials (as the
	// Lockout finds addresses). A request over its limit is refused with
	// 429, Retry-After and the RateLimit-Policy and RateLimit headers of
	// draft-ietf-httpapi-ratelimit-headers-09, which every response under
	// a limit carries. The zero Limit (the default) means none. A Limit
	// with a Rate that is not positive refuses every request with 503.
	RateLimit       Limit
	SourceRateLimit Limit
	// RateLimiter counts the rate limits; nil (the default) means in
	// process memory, bounded to 65,536 keys. Replicas share one budget
	// through the Redis store of store/redis.
	RateLimiter RateLimiter
}

// Require returns middleware that authenticates every request before it
// reaches next.
//
// A request that is still open when its credential expires or is revoked
// (a standalone SSE stream, subscriptions/listen, a long tool call) ends
// then: its context is cancelled, with the refusal ([ErrExpired],
// [ErrRevoked]) as context.Cause, and an event reports it.
//
// The authenticators are tried in order; the first that finds credentials of
// its kind decides, so a request is never authenticated twice. When one
// accepts, the request goes on with its [Principal] attached: plain HTTP
// handlers read it with [PrincipalFromHTTPRequest], and go-sdk's Streamable
// HTTP handler passes it to MCP handlers as req.Extra.TokenInfo (with UserID
// set, so that go-sdk refuses a session to any other user), where
// [PrincipalFromRequest] reads it.
//
// Otherwise the middleware responds with 401 and a WWW-Authenticate: Bearer
// challenge (RFC 6750 §3), with error="invalid_token" when credentials were
// presented; with 403 for [ErrForbidden], and error="insufficient_scope" for
// a [ScopeError]; with 429 for [ErrRateLimited] (Retry-After for a
// [RateLimitError]), for an address or credential locked out after repeated
// failures (RequireOptions.Lockout: on by default) and for a rate limit;
// with 503 and Retry-After when a credential source is down
// ([ErrUnavailable]).
// The response body is a small JSON object with an RFC 6749 error code and a
// fixed description: never the authenticator's error text, never a credential.
//
// With no authenticators, every request is refused.
func Require(opts *RequireOptions, authenticators ...Authenticator) func(http.Handler) http.Handler {
	m := &middleware{}
	if opts != nil {
		m.opts = *opts
	}
	m.events = m.opts.Events
	if m.events == nil {
		m.events = LogEvents(m.opts.Logger)
	}
	warnResourceConflict(&m.opts, m.events)
	switch {
	case m.opts.SuccessEventInterval == 0:
		m.successes = newSuccessLog(time.Minute)
	case m.opts.SuccessEventInterval > 0:
		m.successes = newSuccessLog(m.opts.SuccessEventInterval)
	}
	for _, a := range authenticators {
		if a != nil {
			m.authenticators = append(m.authenticators, a)
		}
		if c, ok := a.(connectionChecker); ok && m.conn == nil {
			m.conn = c
		}
	}
	m.open = newOpenRequests(m.opts.RevocationCheckInterval, m.events)
	m.abuse = newAbuse(&m.opts, m.events)
	m.reportLoaded()
	return func(next http.Handler) http.Handler {
		toNext := bridge.New(next)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			m.serve(w, r, toNext)
		})
	}
}

// reportLoaded reports the configuration Require runs with, once: an
// EventConfiguration success, which the log sink writes at Info.
func (m *middleware) reportLoaded() {
	var b strings.Builder
	b.WriteString("loaded: authenticators")
	if len(m.authenticators) == 0 {
		b.WriteString(" none (every request is refused)")
	}
	for i, a := range m.authenticators {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(" ")
		switch a.(type) {
		case *APIKeys:
			b.WriteString(string(MethodAPIKey))
		case *JWTVerifier:
			b.WriteString(string(MethodJWT))
		case *OAuthVerifier:
			b.WriteString(string(MethodOAuth))
		case *MTLS:
			b.WriteString(string(MethodMTLS))
		default:
			b.WriteString("custom")
		}
	}
	if m.abuse.lockout != nil {
		b.WriteString("; lockout on")
	} else {
		b.WriteString("; lockout off")
	}
	if m.abuse.limits != nil {
		b.WriteString("; rate limits on")
	}
	emit(context.Background(), m.events, Event{Kind: EventConfiguration, Outcome: OutcomeSuccess, Detail: b.String()})
}

type middleware struct {
	opts           RequireOptions
	authenticators []Authenticator
	events         EventSink
	successes      *successLog // nil: report every success in full
	open           *openRequests
	// conn is the client-certificate authenticator that says what
	// certificate a request comes with (see MTLS proxy mode), if any.
	conn  connectionChecker
	abuse abuse
}

func (m *middleware) serve(w http.ResponseWriter, r *http.Request, toNext bridge.Handler) {
	gen := revocationGeneration() // before the credential is judged: see openRequests.open
	source, err := m.abuse.before(r)
	if err != nil {
		m.fail(w, r, err, 0)
		return
	}
	start := time.Now()
	if m.conn != nil {
		r2, err := m.conn.connection(r)
		if err != nil {
			m.fail(w, r, m.abuse.failed(w, r, source, err, start), time.Since(start))
			return
		}
		r = r2
	}
	p, err := m.authenticate(r)
	if err != nil {
		m.fail(w, r, m.abuse.failed(w, r, source, err, start), time.Since(start))
		return
	}
	if err := m.abuse.after(w, r, source, p, start); err != nil {
		m.fail(w, r, err, 0)
		return
	}
	m.auditSuccess(r, p, start)
	// The request ends when the credential does (stream.go): a stream
	// must not outlive the key or token that opened it.
	open := m.open.open(w, r.Context(), p, r.RemoteAddr, requestID(r), gen)
	defer m.open.close(open)
	open.bc.Key, open.bc.Caller, open.bc.Info = principalKey{}, p, p.tokenInfo()
	toNext(open, r, &open.bc)
	if err := open.unanswered(); err != nil {
		// The credential ended before the handler answered (go-sdk runs a
		// 2025-11-25 tool call to its end whatever the request's context):
		// the client gets the refusal, not the result.
		writeChallengeFor(w, err, &m.opts)
	}
}

// errTwoCredentials refuses a request that presents more than one header
// credential: which one would count would depend on the order of the
// authenticators, and an attacker could steer that (RFC 6750 §3.1:
// invalid_request, for a request that uses more than one method).
var errTwoCredentials error = &errorClass{msg: "mcpauth: more than one credential", reason: "two_credentials", desc: "The request presents more than one credential."}

// authenticate runs the authenticators until one finds its credentials.
func (m *middleware) authenticate(r *http.Request) (*Principal, error) {
	if header.Credentials(r.Header) > 1 {
		return nil, errTwoCredentials
	}
	for _, a := range m.authenticators {
		p, err := a.Authenticate(r)
		if err != nil {
			if errors.Is(err, ErrNoCredentials) {
				continue
			}
			return nil, err
		}
		if p == nil {
			// An authenticator that returns neither is broken; refuse.
			return nil, ErrInvalidCredentials
		}
		return p, nil
	}
	if len(m.authenticators) == 0 {
		return nil, ErrUnavailable
	}
	// Credentials were presented that no authenticator recognised (for
	// example a JWT where only API keys are configured): they are invalid
	// here, not missing.
	if header.Credentials(r.Header) > 0 {
		return nil, ErrInvalidCredentials
	}
	return nil, ErrNoCredentials
}

// fail writes the response for a refused request and its audit event.
func (m *middleware) fail(w http.ResponseWriter, r *http.Request, err error, latency time.Duration) {
	m.auditFailure(r, err, classOf(err), latency)
	writeChallengeFor(w, err, &m.opts)
}

// writeChallenge writes the response for a request refused with err: the
// status and RFC 6749 error code that err's class maps to, a WWW-Authenticate
// Bearer challenge (RFC 6750 §3) for 401 and 403, carrying resourceMetadata
// when it is not empty and the required scopes of a [ScopeError], and a body
// with the class's fixed description.
func writeChallenge(w http.ResponseWriter, err error, resourceMetadata string) {
	var resp *response
	if scopeErr := (*ScopeError)(nil); errors.As(err, &scopeErr) {
		resp = newResponse(classOf(err), resourceMetadata, true, scopeErr.Required)
	} else {
		resp = cachedResponse(classOf(err), resourceMetadata)
	}
	h := w.Header()
	retry, limited := time.Duration(0), false
	if rl := (*RateLimitError)(nil); errors.As(err, &rl) {
		retry, limited = rl.RetryAfter, true
	} else if f := (*refusal)(nil); errors.As(err, &f) && f.retryAfter > 0 {
		retry, limited = f.retryAfter, true
	} else if errors.Is(err, ErrUnavailable) {
		// A store or key source that is down is usually back within
		// seconds; the hint keeps clients from retrying in a tight loop.
		retry, limited = unavailableRetryAfter, true
	}
	if limited {
		secs := int64((retry + time.Second - 1) / time.Second)
		h["Retry-After"] = []string{strconv.FormatInt(max(secs, 1), 10)}
	}
	if resp.challenge != "" {
		h["Www-Authenticate"] = []string{resp.challenge}
	}
	h["Content-Type"] = []string{"application/json"}
	h["Cache-Control"] = []string{"no-store"}
	w.WriteHeader(resp.status)
	_, _ = w.Write(resp.body)
}

// unavailableRetryAfter is the Retry-After of a 503.
const unavailableRetryAfter = 5 * time.Second

// A response is the answer to a refused request, built once per error class
// and resource metadata URL: responses are what an attacker guessing
// credentials makes us send, so they should cost little.
type response struct {
	status    int
	challenge string // WWW-Authenticate, or empty
	body      []byte
}

type responseKey struct {
	class            *errorClass
	resourceMetadata string
}

// responses caches responses. It stays small: there are only the package's
// error classes and the resource metadata URLs configured.
var responses sync.Map // responseKey -> *response

func cachedResponse(c *errorClass, resourceMetadata string) *response {
	key := responseKey{c, resourceMetadata}
	if r, ok := responses.Load(key); ok {
		return r.(*response)
	}
	r, _ := responses.LoadOrStore(key, newResponse(c, resourceMetadata, false, nil))
	return r.(*response)
}

func newResponse(c *errorClass, resourceMetadata string, insufficientScope bool, scopes []string) *response {
	status, code := http.StatusUnauthorized, "invalid_token"
	switch {
	case insufficientScope:
		status, code = http.StatusForbidden, "insufficient_scope"
	case c == errTwoCredentials:
		status, code = http.StatusBadRequest, "invalid_request"
	case errors.Is(c, ErrForbidden):
		status, code = http.StatusForbidden, "access_denied"
	case errors.Is(c, ErrUnavailable):
		status, code = http.StatusServiceUnavailable, "temporarily_unavailable"
	case errors.Is(c, ErrRateLimited):
		// RFC 6749 has no code for this; temporarily_unavailable (§4.1.2.1)
		// is the one whose meaning fits.
		status, code = http.StatusTooManyRequests, "temporarily_unavailable"
	}
	// RFC 6750 §3.1: a request without credentials gets no error code, in
	// the challenge or in the body.
	if errors.Is(c, ErrNoCredentials) {
		code = ""
	}
	r := &response{status: status}
	if status == http.StatusUnauthorized || status == http.StatusForbidden || status == http.StatusBadRequest {
		var b strings.Builder
		b.WriteString("Bearer")
		sep := " "
		param := func(k, v string) {
			b.WriteString(sep)
			b.WriteString(k)
			b.WriteString("=")
			b.WriteString(strconv.Quote(v))
			sep = ", "
		}
		if resourceMetadata != "" {
			param("resource_metadata", resourceMetadata)
		}
		if code != "" {
			param("error", code)
			param("error_description", c.desc)
		}
		if len(scopes) > 0 {
			param("scope", strings.Join(scopes, " "))
		}
		r.challenge = b.String()
	}
	r.body, _ = json.Marshal(struct {
		Error       string `json:"error,omitempty"`
		Description string `json:"error_description,omitempty"`
	}{code, c.desc})
	r.body = append(r.body, '\n')
	return r
}

func (m *middleware) auditSuccess(r *http.Request, p *Principal, start time.Time) {
	if ls, ok := m.events.(logSink); ok && !ls.enabled(r.Context(), slog.LevelInfo) && !ls.enabled(r.Context(), slog.LevelDebug) {
		return // a logger that writes no success: spare the clock and the event
	}
	e := Event{
		Kind:       EventAuthentication,
		Outcome:    OutcomeSuccess,
		Method:     p.Method,
		Subject:    p.Subject,
		KeyID:      p.KeyID,
		ClientID:   p.ClientID,
		RemoteAddr: r.RemoteAddr,
		RequestID:  requestID(r),
		Time:       time.Now(),
	}
	e.Latency = e.Time.Sub(start)
	if m.successes != nil {
		e.Repeat = m.successes.seen(p, e.Time)
	}
	emit(r.Context(), m.events, e)
}

func (m *middleware) auditFailure(r *http.Request, err error, c *errorClass, latency time.Duration) {
	e := Event{
		Kind:       EventAuthentication,
		Outcome:    OutcomeFailure,
		Reason:     c.reason,
		RemoteAddr: r.RemoteAddr,
		RequestID:  requestID(r),
		Latency:    latency,
	}
	var f *refusal
	if errors.As(err, &f) {
		e.Method, e.KeyID, e.Detail = f.method, f.keyID, f.detail
		if f.reason != "" {
			e.Reason = f.reason
		}
		abuseEvent(&e, f)
	}
	emit(r.Context(), m.events, e)
}

// requestID returns the request's X-Request-Id, if it has exactly one.
func requestID(r *http.Request) string {
	if v := r.Header[header.RequestID]; len(v) == 1 {
		return v[0]
	}
	return ""
}
