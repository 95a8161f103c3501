package mcpauth

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/mcpauth/mcpauth/internal/audittap"
)

// An EventKind says what kind of decision an [Event] reports.
type EventKind string

// The kinds of event.
const (
	// EventAuthentication is a request's credential checked by [Require]:
	// Outcome success or failure.
	EventAuthentication EventKind = "authentication"
	// EventAuthorization is the guard's decision on a tool, prompt, resource
	// or method: Outcome success (allowed) or denied.
	EventAuthorization EventKind = "authorization"
	// EventKeySource is a fault of something a verifier depends on (a JWKS
	// URL, a revocation store): Outcome failure. Requests that needed it were
	// refused with 503.
	EventKeySource EventKind = "key_source"
	// EventConfiguration is a warning about the configuration (Outcome
	// failure), for example a tool that no rule of the policy covers, or a
	// URL that is plain http to a host that is not loopback (Reason
	// "plain_http"); or a configuration that took effect (Outcome success,
	// Detail "loaded: …", as the authorization server reports at start).
	EventConfiguration EventKind = "configuration"
	// EventKeyManagement is an API key created or deleted in a store
	// through [APIKeys], or added or revoked in code (APIKeys.Add, Revoke,
	// RevokeID): Outcome success, Detail "created", "deleted" or "revoked".
	EventKeyManagement EventKind = "key_management"
	// EventLockout is a [Lockout] of a source address (RemoteAddr) or a
	// credential (Subject) that started (Outcome denied, Detail "started:"
	// and its length) or ended (Outcome success, Detail "ended"). Each is
	// reported once; the attempts refused meanwhile are authentication
	// failures with Reason "locked_out" and Repeat set.
	EventLockout EventKind = "lockout"
	// EventRateLimit is a request refused for exceeding a principal's or an
	// address's rate limit ([RequireOptions].RateLimit): Outcome denied.
	EventRateLimit EventKind = "rate_limit"
)

// An Outcome is how a decision went.
type Outcome string

// The outcomes.
const (
	OutcomeSuccess Outcome = "success"
	OutcomeFailure Outcome = "failure"
	OutcomeDenied  Outcome = "denied"
)

// An Event is one security decision. Events never hold a secret: a
// credential appears only as its public KeyID (an API key's fingerprint, a
// token's kid or jti).
//
// Values that a caller chooses (a subject or key ID from a token, a tool
// name, a request id) are bounded to 256 bytes, marked as cut,
// and have control and invalid bytes replaced, before a sink sees them.
type Event struct {
	Time    time.Time
	Kind    EventKind
	Outcome Outcome
	// Reason says why a request failed or was denied, as a short fixed
	// word: "expired", "revoked", "unknown", "role", "scope", … Empty for a
	// success.
	Reason string
	// Repeat marks a success for a credential that was already reported
	// within RequireOptions.SuccessEventInterval, or a failure that repeats
	// one reported already (an attempt refused during a lockout). The log
	// sink writes repeats at Debug, so that every decision stays
	// observable without burying the ones that matter.
	Repeat bool
	// Latency is how long the decision took, when it was timed (the
	// authenticators' work for EventAuthentication). Metrics sinks observe
	// it; zero means not timed.
	Latency time.Duration

	// Method, Issuer, Subject, KeyID and ClientID describe the caller, when
	// known; for EventKeySource, Issuer names whose keys failed.
	Method   Method
	Issuer   string
	Subject  string
	KeyID    string
	ClientID string
	// RemoteAddr is the request's remote address, as net/http reports it.
	RemoteAddr string
	// RequestID is the request's X-Request-Id header, when it has one.
	RequestID string

	// Layer says where an authorization was decided: "mcp" (inside go-sdk)
	// or "http" (the step-up check before it).
	Layer string
	// RPCMethod is the MCP method decided, for example "tools/call".
	RPCMethod string
	// TargetKind ("tool", "prompt" or "resource") and Target (its name or
	// URI) say what the caller asked to use.
	TargetKind string
	Target     string

	// Detail is a fixed or public note for operators, for example which
	// check of a token failed. It never holds a library's error text.
	Detail string
}

// The reasons of EventKeySource events.
const (
	reasonJWKSDown        = "jwks_unavailable"
	reasonJWKSRedirect    = "jwks_redirect_refused"
	reasonRevocationsDown = "revocations_unavailable"
	reasonAPIKeysDown     = "apikeys_unavailable"
)

// maxEventValueLen bounds each caller-chosen value of an [Event].
const maxEventValueLen = 256

// An EventSink receives security events. Record must be safe for concurrent
// use and should return quickly: it runs on the request's goroutine.
type EventSink interface {
	Record(ctx context.Context, e Event)
}

// LogEvents returns the default [EventSink]: it writes each event to l as
// one record, failures and denials at Warn, key-source faults at Error,
// successes at Info and repeated successes and allowed authorizations at
// Debug. A nil l means the application's slog.Default(), looked up at each
// event; until the application sets one (slog.SetDefault), events are JSON
// lines on standard error, Info and above, rather than slog's built-in text
// through the log package.
func LogEvents(l *slog.Logger) EventSink { return logSink{l} }

type logSink struct{ l *slog.Logger }

// builtinDefault is slog's own default logger, as it is before an
// application sets one: the package's variables are set before main runs.
var builtinDefault = slog.Default()

// defaultEventLogger is where events go while slog.Default() is
// builtinDefault (a variable for tests).
var defaultEventLogger atomic.Pointer[slog.Logger]

func init() { defaultEventLogger.Store(slog.New(slog.NewJSONHandler(os.Stderr, nil))) }

func (s logSink) logger() *slog.Logger {
	if s.l != nil {
		return s.l
	}
	if l := slog.Default(); l != builtinDefault {
		return l
	}
	return defaultEventLogger.Load()
}

func (s logSink) enabled(ctx context.Context, level slog.Level) bool {
	return s.logger().Enabled(ctx, level)
}

func (s logSink) Record(ctx context.Context, e Event) {
	l := s.logger()
	level := e.level()
	if !l.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, 14)
	attrs = append(attrs, slog.String("kind", string(e.Kind)), slog.String("outcome", string(e.Outcome)))
	str := func(k, v string) {
		if v != "" {
			attrs = append(attrs, slog.String(k, v))
		}
	}
	str("reason", e.Reason)
	str("layer", e.Layer)
	str("rpc_method", e.RPCMethod)
	if e.TargetKind != "" {
		attrs = append(attrs, slog.String(e.TargetKind, e.Target))
	}
	str("method", string(e.Method))
	str("issuer", e.Issuer)
	str("subject", e.Subject)
	str("key_id", e.KeyID)
	str("client_id", e.ClientID)
	str("detail", e.Detail)
	str("remote", e.RemoteAddr)
	str("request_id", e.RequestID)
	if e.Latency > 0 {
		attrs = append(attrs, slog.Duration("latency", e.Latency))
	}
	r := slog.NewRecord(e.Time, level, e.message(), 0)
	r.AddAttrs(attrs...)
	_ = l.Handler().Handle(ctx, r)
}

func (e *Event) level() slog.Level {
	switch {
	case e.Kind == EventKeySource:
		return slog.LevelError
	case e.Repeat:
		return slog.LevelDebug
	case e.Kind == EventConfiguration && e.Outcome == OutcomeSuccess:
		return slog.LevelInfo // a configuration that took effect
	case e.Outcome != OutcomeSuccess || e.Kind == EventConfiguration:
		return slog.LevelWarn
	case e.Kind == EventAuthorization:
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

func (e *Event) message() string {
	switch e.Kind {
	case EventAuthentication:
		if e.Outcome == OutcomeSuccess {
			return "mcpauth: authenticated"
		}
		return "mcpauth: authentication failed"
	case EventAuthorization:
		if e.Outcome == OutcomeSuccess {
			return "mcpauth: access allowed"
		}
		return "mcpauth: access denied"
	case EventKeySource:
		switch e.Reason {
		case reasonRevocationsDown:
			return "mcpauth: revocation store unavailable"
		case reasonAPIKeysDown:
			return "mcpauth: API key store unavailable"
		}
		if e.Reason == reasonLockoutStoreDown {
			return "mcpauth: lockout store unavailable"
		}
		return "mcpauth: JWKS fetch failed"
	case EventConfiguration:
		return "mcpauth: configuration"
	case EventKeyManagement:
		switch e.Detail {
		case reasonAPIKeysDeleted:
			return "mcpauth: API key deleted"
		case reasonAPIKeysRevoked:
			return "mcpauth: API key revoked"
		}
		return "mcpauth: API key created"
	case EventLockout:
		if e.Outcome == OutcomeSuccess {
			return "mcpauth: lockout ended"
		}
		return "mcpauth: lockout started"
	case EventRateLimit:
		return "mcpauth: rate limited"
	}
	return "mcpauth: " + string(e.Kind)
}

// sinkFor returns events, or the log sink on l when events is nil: the one
// place an options struct's Events and Logger are resolved.
func sinkFor(events EventSink, l *slog.Logger) EventSink {
	if events != nil {
		return events
	}
	return logSink{l}
}

// emit bounds the event's caller-chosen values and hands it to sink (the
// log sink on slog.Default() when sink is nil).
func emit(ctx context.Context, sink EventSink, e Event) {
	if audittap.On() {
		t := e.Bounded()
		t.Time, t.Latency = time.Time{}, 0
		audittap.Event(fmt.Sprintf("%+v", t))
	}
	if sink == nil {
		sink = logSink{}
	}
	if ls, ok := sink.(logSink); ok && !ls.enabled(ctx, e.level()) {
		return // nothing to bound or to build
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e = e.Bounded()
	sink.Record(ctx, e)
}

// Bounded returns e with each caller-chosen value bounded as [Event]
// describes: at most 256 bytes of valid UTF-8 without control characters,
// a cut value marked "…[cut]". Require, the verifiers and the guard hand
// sinks bounded events; a part of another package that records events
// (the authorization server) bounds them with it.
func (e Event) Bounded() Event {
	e.Reason = boundValue(e.Reason)
	e.Issuer = boundValue(e.Issuer)
	e.Subject = boundValue(e.Subject)
	e.KeyID = boundValue(e.KeyID)
	e.ClientID = boundValue(e.ClientID)
	e.RemoteAddr = boundValue(e.RemoteAddr)
	e.RequestID = boundValue(e.RequestID)
	e.Layer = boundValue(e.Layer)
	e.RPCMethod = boundValue(e.RPCMethod)
	e.Target = boundValue(e.Target)
	e.Detail = boundValue(e.Detail)
	return e
}

// cutMark ends a value that was cut to maxEventValueLen.
const cutMark = "…[cut]"

// boundValue returns s if it is at most maxEventValueLen bytes of valid
// UTF-8 without control characters, as nearly every value is; otherwise a
// copy with each control character or invalid byte replaced by U+FFFD and
// cut, on a character boundary, to maxEventValueLen bytes ending in cutMark.
func boundValue(s string) string {
	clean := len(s) <= maxEventValueLen
	for i := 0; clean && i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || c >= 0x80 {
			clean = false
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	cut := false
	for _, r := range s { // an invalid byte comes as utf8.RuneError
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			r = utf8.RuneError
		}
		if b.Len()+utf8.RuneLen(r) > maxEventValueLen {
			cut = true
			break
		}
		b.WriteRune(r)
	}
	out := b.String()
	if !cut {
		return out
	}
	for len(out)+len(cutMark) > maxEventValueLen {
		_, size := utf8.DecodeLastRuneInString(out)
		out = out[:len(out)-size]
	}
	return out + cutMark
}

// successLog decides which successes are repeats: a principal's success is
// reported in full at most once per interval. The time of the last full
// report is kept in the principal itself, which authenticators share across
// requests (an API key's principal, a cached token's), so the hot path
// takes no lock and keeps no map that callers could grow.
type successLog struct {
	interval int64 // nanoseconds
}

func newSuccessLog(interval time.Duration) *successLog {
	return &successLog{interval: int64(interval)}
}

// seen reports whether p was reported in full within the interval before
// now, and records now as its last full report if not.
func (l *successLog) seen(p *Principal, now time.Time) bool {
	t := now.UnixNano()
	last := atomic.LoadInt64(&p.reported)
	if last != 0 && t >= last && t-last < l.interval {
		return true
	}
	// Of two requests racing here, one reports in full.
	return !atomic.CompareAndSwapInt64(&p.reported, last, t)
}
