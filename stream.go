package mcpauth

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// What a credential opened ends with it. Require authenticates a request
// once, when it starts, but a Streamable HTTP request can stay open for
// hours: a standalone SSE stream (GET), a subscriptions/listen call, a long
// tool call that streams progress. Require tracks every open request and
// cancels its context, with the refusal as its cause, when the credential
// expires or is revoked; go-sdk then closes the stream, and the client's
// next request is refused as any other would be.
//
// One watcher goroutine per Require does the tracking. It runs only while
// requests are open, sleeps until the earliest expiry or the next check of
// revocations recorded elsewhere, and wakes at once when this process
// revokes a credential.

// A credentialState is how an open request learns that its credential was
// revoked after it was accepted. Authenticators set it once, when they
// build a principal, before the principal is shared between requests.
type credentialState interface {
	// revoked reports whether the credential has been revoked. An error
	// means the answer is unknown, and the request ends: fail closed.
	isRevoked(ctx context.Context) (bool, error)
	// shared reports whether the credential can be revoked where this
	// process does not see it (another replica writing a shared Store), so
	// that it must be checked again at intervals. Otherwise a revocation
	// here wakes the watchers (notifyRevoked) and no polling is needed.
	shared() bool
}

// defaultRevocationCheckInterval is RequireOptions.RevocationCheckInterval's
// default.
const defaultRevocationCheckInterval = 2 * time.Second

// stateCheckTimeout bounds one round of revocation checks, so that a store
// that hangs cannot keep a revoked credential's streams open.
const stateCheckTimeout = 5 * time.Second

// revocation is the process-wide signal that a credential was revoked: the
// channel is closed and replaced on every revocation.
var revocation struct {
	mu sync.Mutex
	ch chan struct{}
}

// revocations returns a channel that is closed at the next revocation.
func revocations() <-chan struct{} {
	revocation.mu.Lock()
	defer revocation.mu.Unlock()
	if revocation.ch == nil {
		revocation.ch = make(chan struct{})
	}
	return revocation.ch
}

// notifyRevoked wakes every watcher to check its open requests again. Every
// way of revoking a credential in this process calls it, after the
// revocation is recorded.
func notifyRevoked() {
	revocation.mu.Lock()
	defer revocation.mu.Unlock()
	if revocation.ch != nil {
		close(revocation.ch)
	}
	// A watcher that asks for the channel from now on gets one that the
	// next revocation closes; it checks its requests after asking, so it
	// misses none.
	revocation.ch = make(chan struct{})
}

// openRequests are the requests one Require has let through and that have
// not finished.
type openRequests struct {
	interval time.Duration
	now      func() time.Time
	events   EventSink

	mu       sync.Mutex
	reqs     map[*openRequest]struct{}
	running  bool      // a watcher goroutine runs
	earliest time.Time // the deadline the watcher sleeps toward; zero: none
	round    uint64    // revocation checks done; see openRequest.round
	wake     chan struct{}
}

// An openRequest is one request being served, and the ResponseWriter its
// handler writes to. Once the request has ended, the writer refuses every
// write: whatever the handler still does (go-sdk lets a tool call of the
// 2025-11-25 protocol run to its end), nothing more reaches the client.
type openRequest struct {
	w        http.ResponseWriter
	p        *Principal
	cancel   context.CancelCauseFunc
	deadline time.Time // when the credential expires; zero: never
	round    uint64    // o.round when the request opened
	remote   string    // for the event that ends it
	reqID    string

	ended atomic.Bool
	cause error // why it ended; written before ended is set
	wrote bool  // the handler has written the header; its goroutine only
}

// end marks r ended with cause and cancels its context.
func (r *openRequest) end(cause error) {
	r.cause = cause
	r.ended.Store(true)
	r.cancel(cause)
}

func (r *openRequest) Header() http.Header { return r.w.Header() }

func (r *openRequest) WriteHeader(code int) {
	if r.ended.Load() {
		return
	}
	r.wrote = true
	r.w.WriteHeader(code)
}

func (r *openRequest) Write(b []byte) (int, error) {
	if r.ended.Load() {
		return 0, r.cause
	}
	r.wrote = true
	return r.w.Write(b)
}

// FlushError is what http.ResponseController's Flush calls.
func (r *openRequest) FlushError() error {
	if r.ended.Load() {
		return r.cause
	}
	return http.NewResponseController(r.w).Flush()
}

// Flush implements http.Flusher, for handlers that look for it.
func (r *openRequest) Flush() { _ = r.FlushError() }

// Unwrap lets http.ResponseController reach the connection for what the
// writer does not do itself (deadlines).
func (r *openRequest) Unwrap() http.ResponseWriter { return r.w }

// unanswered returns why r ended when its handler wrote nothing before
// that, so that the client can be answered with the refusal; else nil.
func (r *openRequest) unanswered() error {
	if r.ended.Load() && !r.wrote {
		return r.cause
	}
	return nil
}

func newOpenRequests(interval time.Duration, events EventSink) *openRequests {
	if interval <= 0 {
		interval = defaultRevocationCheckInterval
	}
	return &openRequests{
		interval: interval,
		now:      time.Now,
		events:   events,
		reqs:     make(map[*openRequest]struct{}),
		wake:     make(chan struct{}, 1),
	}
}

// open tracks a request of p and returns the context to serve it with,
// which is cancelled when p's credential ends, and the function to call
// when the request is done.
func (o *openRequests) open(w http.ResponseWriter, parent context.Context, p *Principal, remote, reqID string) (context.Context, *openRequest) {
	ctx, cancel := context.WithCancelCause(parent)
	r := &openRequest{w: w, p: p, cancel: cancel, remote: remote, reqID: reqID}
	if !p.Expiry.IsZero() {
		r.deadline = p.Expiry.Add(p.grace)
		if p.clock != nil {
			// The deadline in this clock's terms: an authenticator may
			// judge expiry by a clock of its own.
			r.deadline = o.now().Add(r.deadline.Sub(p.clock()))
		}
	}
	o.mu.Lock()
	r.round = o.round
	o.reqs[r] = struct{}{}
	start := !o.running
	o.running = true
	earlier := !r.deadline.IsZero() && (o.earliest.IsZero() || r.deadline.Before(o.earliest))
	if earlier {
		o.earliest = r.deadline
	}
	o.mu.Unlock()
	switch {
	case start:
		go o.watch()
	case earlier:
		select {
		case o.wake <- struct{}{}:
		default:
		}
	}
	return ctx, r
}

// close stops tracking r and releases its context.
func (o *openRequests) close(r *openRequest) {
	o.mu.Lock()
	delete(o.reqs, r)
	o.mu.Unlock()
	r.cancel(context.Canceled) // no effect once ended: the first cause stays
}

// watch ends open requests whose credential expired or was revoked, until
// no request is open.
func (o *openRequests) watch() {
	timer := time.NewTimer(o.interval)
	defer timer.Stop()
	nextPoll := o.now().Add(o.interval)
	recheck := false // a revocation was signalled
	for {
		// Ask for the signal before looking at the requests: a revocation
		// recorded after this closes the channel, so none is missed.
		revoked := revocations()
		if recheck {
			recheck = false
			o.checkStates(true)
		}
		now := o.now()
		polling, idle := o.endExpired(now)
		if idle {
			return
		}
		if polling && !now.Before(nextPoll) {
			o.checkStates(false)
			nextPoll = o.now().Add(o.interval)
			continue
		}
		wait := time.Duration(-1)
		if polling {
			wait = nextPoll.Sub(now)
		}
		o.mu.Lock()
		if !o.earliest.IsZero() {
			if d := o.earliest.Sub(now); wait < 0 || d < wait {
				wait = d
			}
		}
		o.mu.Unlock()
		if wait < 0 {
			// Nothing to wait for but the requests' end, or a revocation:
			// look again at the interval, to see whether all are done.
			wait = o.interval
		}
		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-o.wake:
			timer.Stop()
		case <-revoked:
			timer.Stop()
			recheck = true
		}
	}
}

// endExpired ends the requests whose credential has expired at now and
// sets o.earliest to the next deadline. It reports whether any open
// request has a state that needs polling, and, when no request is open,
// stops the watcher (idle).
func (o *openRequests) endExpired(now time.Time) (polling, idle bool) {
	var ended []*openRequest
	o.mu.Lock()
	if len(o.reqs) == 0 {
		o.running = false
		o.earliest = time.Time{}
		o.mu.Unlock()
		return false, true
	}
	var earliest time.Time
	for r := range o.reqs {
		if !r.deadline.IsZero() {
			if !now.Before(r.deadline) {
				delete(o.reqs, r)
				ended = append(ended, r)
				continue
			}
			if earliest.IsZero() || r.deadline.Before(earliest) {
				earliest = r.deadline
			}
		}
		if s := r.p.state; s != nil && s.shared() {
			polling = true
		}
	}
	o.earliest = earliest
	o.mu.Unlock()
	for _, r := range ended {
		o.end(r, ErrExpired)
	}
	return polling, false
}

// checkStates asks the states of open requests whether their credential
// was revoked, once per principal, and ends the revoked ones. all is false
// for a periodic check, which skips the credentials that only this process
// can revoke (a revocation here wakes the watcher) and the requests opened
// since the previous check (they were authenticated since).
func (o *openRequests) checkStates(all bool) {
	o.mu.Lock()
	o.round++
	round := o.round
	byPrincipal := make(map[*Principal][]*openRequest)
	for r := range o.reqs {
		s := r.p.state
		if s == nil || (!all && (!s.shared() || r.round+1 >= round)) {
			continue
		}
		byPrincipal[r.p] = append(byPrincipal[r.p], r)
	}
	o.mu.Unlock()
	if len(byPrincipal) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), stateCheckTimeout)
	defer cancel()
	type ending struct {
		r     *openRequest
		cause error
	}
	var endings []ending
	for p, reqs := range byPrincipal {
		revoked, err := p.state.isRevoked(ctx)
		var cause error
		switch {
		case err != nil:
			cause = errRevocationsFailed
		case revoked:
			cause = ErrRevoked
		default:
			continue
		}
		o.mu.Lock()
		for _, r := range reqs {
			if _, open := o.reqs[r]; open {
				delete(o.reqs, r)
				endings = append(endings, ending{r, cause})
			}
		}
		o.mu.Unlock()
	}
	for _, e := range endings {
		o.end(e.r, e.cause)
	}
}

// end cancels an open request with cause and reports it. The request's
// handler still calls close, which then finds nothing to do.
func (o *openRequests) end(r *openRequest, cause error) {
	r.end(cause)
	c := classOf(cause)
	emit(context.Background(), o.events, Event{
		Kind:       EventAuthentication,
		Outcome:    OutcomeFailure,
		Reason:     c.reason,
		Method:     r.p.Method,
		Issuer:     r.p.Issuer,
		Subject:    r.p.Subject,
		KeyID:      r.p.KeyID,
		ClientID:   r.p.ClientID,
		RemoteAddr: r.remote,
		RequestID:  r.reqID,
		Detail:     "open request ended",
		Time:       o.now(),
	})
}
