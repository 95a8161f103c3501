package authserver

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/mcpauth/mcpauth"
	"github.com/mcpauth/mcpauth/internal/audittap"
)

// An oauthError is an error response of RFC 6749 §5.2 (token endpoint),
// RFC 7591 §3.2.2 (registration) or RFC 6749 §4.1.2.1 (authorization
// endpoint). Its description is fixed text chosen here, never an error's
// text or anything the request carried.
type oauthError struct {
	code   string
	desc   string
	status int // 0 means 400
	// basic asks for a WWW-Authenticate: Basic challenge (RFC 6749 §5.2:
	// the client tried the Authorization header).
	basic bool
	// retryAfter is the Retry-After of a 429.
	retryAfter time.Duration
}

func (e *oauthError) Error() string { return "mcpauth: authserver: " + e.code + ": " + e.desc }

func errInvalidRequest(desc string) *oauthError {
	return &oauthError{code: "invalid_request", desc: desc}
}
func errInvalidGrant(desc string) *oauthError { return &oauthError{code: "invalid_grant", desc: desc} }
func errInvalidScope(desc string) *oauthError { return &oauthError{code: "invalid_scope", desc: desc} }
func errInvalidTarget(desc string) *oauthError {
	return &oauthError{code: "invalid_target", desc: desc}
}
func errUnauthorizedClient(desc string) *oauthError {
	return &oauthError{code: "unauthorized_client", desc: desc}
}

var (
	errUnsupportedGrant = &oauthError{code: "unsupported_grant_type", desc: "The grant type is not supported."}
	errServer           = &oauthError{code: "server_error", desc: "The authorization server could not complete the request.", status: http.StatusInternalServerError}
	// errUnavailable answers a request that needed a store or a key that
	// failed: the request fails closed, and may be retried.
	errUnavailable = &oauthError{code: "temporarily_unavailable", desc: "The authorization server is temporarily unavailable.", status: http.StatusServiceUnavailable}
)

// retryAfterUnavailable is the Retry-After, in seconds, of every 503: a
// store that failed is usually back within seconds (a Redis failover, a
// restart), and a client that retries sooner only adds load.
const retryAfterUnavailable = "5"

// errInvalidClient is a failed client authentication (RFC 6749 §5.2): 401,
// so that a client that registered itself (Claude, for one) registers again.
func errInvalidClient(basic bool) *oauthError {
	return &oauthError{code: "invalid_client", desc: "Client authentication failed.", status: http.StatusUnauthorized, basic: basic}
}

// errLockedOut answers a request from a locked-out address or client
// ([mcpauth.Lockout]): 429 with Retry-After. RFC 6749 has no code for it;
// temporarily_unavailable is the one whose meaning fits, as in mcpauth's
// own 429s.
func errLockedOut(err error) *oauthError {
	e := &oauthError{code: "temporarily_unavailable", desc: "Too many failed attempts; retry later.", status: http.StatusTooManyRequests, retryAfter: time.Second}
	if rl := (*mcpauth.RateLimitError)(nil); errors.As(err, &rl) {
		e.retryAfter = max(rl.RetryAfter, time.Second)
	}
	return e
}

// setRetryAfter writes a Retry-After header of d, in whole seconds
// rounded up.
func setRetryAfter(w http.ResponseWriter, d time.Duration) {
	w.Header().Set("Retry-After", strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10))
}

// writeJSON writes v with the headers every response of the token,
// revocation, introspection and registration endpoints carries: no
// caching (RFC 6749 §5.1).
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"server_error"}`)
	}
	audittap.JSON(b)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// writeError writes e as an RFC 6749 §5.2 error response.
func (s *Server) writeError(w http.ResponseWriter, e *oauthError) {
	status := e.status
	if status == 0 {
		status = http.StatusBadRequest
	}
	if e.basic {
		w.Header().Set("WWW-Authenticate", `Basic realm="`+s.realm+`"`)
	}
	if e.retryAfter > 0 {
		setRetryAfter(w, e.retryAfter)
	} else if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", retryAfterUnavailable)
	}
	writeJSON(w, status, struct {
		Error       string `json:"error"`
		Description string `json:"error_description,omitempty"`
	}{e.code, e.desc})
}
