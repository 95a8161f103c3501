package mcpauth

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Resource notifications follow the session's current caller. A client
// subscribes to a resource once, with the credential it holds then, and
// go-sdk sends notifications/resources/updated to the session from then on,
// past every receiving middleware. If the client goes on with a lesser
// credential of the same subject (go-sdk binds a session to the subject,
// not to one credential), or the subscribing credential expires or is
// revoked, the updates must stop: the guard remembers the principal of the
// latest request of each subscribed session and, in its sending
// middleware, drops an update that this principal may not receive.

// subscribers are the sessions that subscribed to a resource through the
// guard, each with the principal of its latest request.
type subscribers struct {
	n  atomic.Int64 // len(m): a server without subscriptions pays one load
	mu sync.Mutex
	m  map[*mcp.ServerSession]*atomic.Pointer[Principal]
}

// observe records p as the latest principal of session, adding it to the
// subscribed sessions; it is dropped when the session closes.
func (s *subscribers) observe(session *mcp.ServerSession, p *Principal) {
	if session == nil || p == nil {
		return
	}
	s.mu.Lock()
	cur, ok := s.m[session]
	if !ok {
		if s.m == nil {
			s.m = make(map[*mcp.ServerSession]*atomic.Pointer[Principal])
		}
		cur = new(atomic.Pointer[Principal])
		s.m[session] = cur
		s.n.Add(1)
	}
	s.mu.Unlock()
	cur.Store(p)
	if !ok {
		go func() {
			_ = session.Wait()
			s.mu.Lock()
			delete(s.m, session)
			s.n.Add(-1)
			s.mu.Unlock()
		}()
	}
}

// update records p as the latest principal of session if the session has
// subscribed.
func (s *subscribers) update(session mcp.Session, p *Principal) {
	if s.n.Load() == 0 || p == nil {
		return
	}
	ss, ok := session.(*mcp.ServerSession)
	if !ok {
		return
	}
	s.mu.Lock()
	cur := s.m[ss]
	s.mu.Unlock()
	if cur != nil {
		cur.Store(p)
	}
}

// latest returns the latest principal of a subscribed session, or nil.
func (s *subscribers) latest(session mcp.Session) *Principal {
	ss, ok := session.(*mcp.ServerSession)
	if !ok {
		return nil
	}
	s.mu.Lock()
	cur := s.m[ss]
	s.mu.Unlock()
	if cur == nil {
		return nil
	}
	return cur.Load()
}

// subscribed records that req's session subscribed to a guarded resource.
func (g *Guard) subscribed(ctx context.Context, req mcp.Request) {
	ss, ok := req.GetSession().(*mcp.ServerSession)
	if !ok {
		return
	}
	g.subs.observe(ss, PrincipalFromRequest(req))
	if !g.notifying.Load() {
		g.warnOnce.Do(func() {
			emit(ctx, g.events, Event{Kind: EventConfiguration, Outcome: OutcomeFailure, Reason: "notifications_unfiltered",
				Detail: "a session subscribed to a guarded resource, but the guard was not added with Guard.Install: its updates are not filtered"})
		})
	}
}

// Install adds the guard to server: [Guard.Middleware] as receiving
// middleware, and sending middleware that drops a
// notifications/resources/updated the session's current caller may not
// receive. Call it once per server, where the guard belongs among the
// server's other middleware.
//
// The current caller is the principal of the session's latest request. An
// update is dropped when that principal's rules do not allow the resource
// (a session subscribed with an admin key and went on with a viewer key),
// when its credential has expired, or when it has been revoked; each drop
// is an authorization event. Only resources that rules name are filtered.
func (g *Guard) Install(server *mcp.Server) {
	server.AddReceivingMiddleware(g.Middleware())
	server.AddSendingMiddleware(g.notifications())
}

// notifications returns the sending middleware of Install.
func (g *Guard) notifications() mcp.Middleware {
	g.notifying.Store(true)
	return func(next mcp.MethodHandler) mcp.MethodHandler {
		return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
			if method != "notifications/resources/updated" || !g.c.kinds[kindResource].active {
				return next(ctx, method, req)
			}
			var uri string
			if p, ok := req.GetParams().(*mcp.ResourceUpdatedNotificationParams); ok && p != nil {
				uri = p.URI
			}
			p := g.subs.latest(req.GetSession())
			err := g.mayNotify(ctx, p, uri)
			if err != nil {
				audit(ctx, g.events, "notify", method, p, kindResource, uri, err)
				return nil, nil // dropped: the session hears nothing of it
			}
			return next(ctx, method, req)
		}
	}
}

// A recentlyChecked state can tell, without asking its source, that a
// recent check found the credential still valid.
type recentlyChecked interface {
	recentlyValid(maxAge time.Duration) bool
}

// notifyStaleness is how old a check of a credential held in a shared store
// may be for an update to go out on it: a revocation that another replica
// records stops the updates within this, and ends the stream itself within
// twice RequireOptions.RevocationCheckInterval.
const notifyStaleness = time.Second

// mayNotify decides whether p, a session's current caller, may receive an
// update of the resource uri.
func (g *Guard) mayNotify(ctx context.Context, p *Principal, uri string) error {
	if p == nil {
		// A session the guard did not see subscribe: fail closed.
		return errUnauthenticated
	}
	if !p.Expiry.IsZero() {
		now := time.Now()
		if p.clock != nil {
			now = p.clock()
		}
		if !now.Before(p.Expiry.Add(p.grace)) {
			return failure(p.Method, ErrExpired, p.KeyID, "")
		}
	}
	// A credential checked moments ago (by the watcher of the stream this
	// goes on, or for an earlier update) is not read again per update.
	if r, ok := p.state.(recentlyChecked); p.state != nil && (!ok || !r.recentlyValid(notifyStaleness)) {
		revoked, err := p.state.isRevoked(ctx)
		if err != nil {
			return failure(p.Method, errRevocationsFailed, p.KeyID, "")
		}
		if revoked {
			return failure(p.Method, ErrRevoked, p.KeyID, "")
		}
	}
	_, err := g.c.decide(p, kindResource, uri)
	return err
}
