package mcpauth

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mcpauth/mcpauth/internal/audittap"
	"github.com/mcpauth/mcpauth/internal/header"
)

// abuse holds the abuse controls of [Require]: its lockout and rate
// limits. Its hooks run before the authenticators (a locked-out address is
// refused without a credential check), after a failure (which counts it)
// and after a success (a locked-out credential, and the principal's rate
// limit).
type abuse struct {
	lockout *Lockout    // nil: off
	limits  *rateLimits // nil: none
	broken  bool        // a configuration Require cannot use: refuse all
}

// errAbuseConfig refuses every request of a Require whose rate limits
// cannot work.
var errAbuseConfig = &refusal{class: ErrUnavailable, reason: "configuration"}

func newAbuse(opts *RequireOptions, events EventSink) abuse {
	a := abuse{lockout: opts.Lockout}
	if a.lockout == nil {
		a.lockout, _ = newLockout(&LockoutOptions{Events: events}, nil)
	}
	if a.lockout.opts.SourceFailures < 0 && a.lockout.opts.CredentialFailures < 0 {
		a.lockout = nil
	}
	rl, err := newRateLimits(opts)
	if err != nil {
		a.broken = true
		emit(context.Background(), events, Event{Kind: EventConfiguration, Outcome: OutcomeFailure, Reason: "rate_limit", Detail: "a RequireOptions rate limit has no positive Rate: every request is refused"})
	}
	a.limits = rl
	warnPlainHTTP(events, "RequireOptions.ResourceMetadataURL", opts.ResourceMetadataURL)
	return a
}

// before refuses a request from a locked-out source. It returns the
// request's source when it had to find it, else "".
func (a *abuse) before(r *http.Request) (string, error) {
	if audittap.On() {
		tapCredentials(r.Header)
	}
	if a.broken {
		return "", errAbuseConfig
	}
	if a.lockout == nil || !a.lockout.active() {
		return "", nil
	}
	if addr, ok := a.lockout.sourceAddr(r); ok {
		// The common case: nothing to form, and "" tells the steps after
		// that the source is still to be found should they need it.
		return "", a.lockout.checkSource(addr)
	}
	source := a.lockout.Source(r)
	return source, a.lockout.check(source, "")
}

// guessable reports whether a failure could be a guess, and so counts
// towards a lockout: an unknown, malformed or forged credential. An expired
// or revoked one was valid once, so it is no guess.
func guessable(err error) bool {
	return errors.Is(err, ErrInvalidCredentials) && !errors.Is(err, ErrExpired) && !errors.Is(err, ErrRevoked)
}

// failed counts a failed authentication and returns the error to answer it
// with: err, or a rate-limit refusal of its source.
func (a *abuse) failed(w http.ResponseWriter, r *http.Request, source string, err error, now time.Time) error {
	count := a.lockout != nil && guessable(err)
	limit := a.limits != nil && a.limits.source.Rate > 0 && (errors.Is(err, ErrNoCredentials) || errors.Is(err, ErrInvalidCredentials))
	if !count && !limit {
		return err
	}
	if source == "" {
		source = a.lockout.Source(r) // a nil Lockout finds the remote address
	}
	if count {
		var f *refusal
		credential := ""
		if errors.As(err, &f) {
			credential = principalCredential(f.method, f.keyID)
		}
		a.lockout.fail(r.Context(), source, credential, requestID(r))
	}
	if limit {
		if e := a.limits.allow(w, r, "source|"+source, true, now); e != nil {
			return e
		}
	}
	return err
}

// after refuses an authenticated request whose credential is locked out
// at its source, or that exceeds its principal's rate limit.
func (a *abuse) after(w http.ResponseWriter, r *http.Request, source string, p *Principal, now time.Time) error {
	if a.lockout != nil && a.lockout.credLocks.Load() > 0 && a.lockout.opts.CredentialFailures > 0 && p.KeyID != "" {
		if source == "" {
			source = a.lockout.Source(r)
		}
		if err := a.lockout.check(source, principalCredential(p.Method, p.KeyID)); err != nil {
			return err
		}
	}
	if a.limits != nil && a.limits.principal.Rate > 0 {
		return a.limits.allow(w, r, p.tokenInfo().UserID, false, now)
	}
	return nil
}

// abuseEvent marks the authentication failure event of an abuse control's
// refusal: an attempt refused during a lockout repeats the lockout's
// event; a rate limit is its own kind.
func abuseEvent(e *Event, f *refusal) {
	switch f.reason {
	case "locked_out":
		e.Repeat = true
	case "rate_limited":
		e.Kind, e.Outcome = EventRateLimit, OutcomeDenied
	}
}

// warnPlainHTTP reports a configured URL that is plain http to a host that
// is not loopback: whatever it carries (metadata, keys, tokens) can be
// read and changed in transit.
func warnPlainHTTP(events EventSink, what, raw string) {
	if raw == "" {
		return
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || isLoopback(u.Hostname()) {
		return
	}
	emit(context.Background(), events, Event{Kind: EventConfiguration, Outcome: OutcomeFailure, Reason: "plain_http", Detail: what + " is plain http to a host that is not loopback"})
}

// tapCredentials hands the request's credentials to the test tap that
// checks that no event carries one.
func tapCredentials(h http.Header) {
	for _, v := range h[header.APIKey] {
		audittap.Secret(v)
	}
	for _, v := range h["Authorization"] {
		audittap.Secret(v)
		if _, token, ok := strings.Cut(v, " "); ok {
			audittap.Secret(strings.TrimSpace(token))
		}
	}
}
