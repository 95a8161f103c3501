package mcpauth_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpauth/mcpauth"
	"github.com/mcpauth/mcpauth/internal/mcptest"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// notifySetup is a server whose guard filters resource notifications, with
// an admin key and a viewer key of one subject.
type notifySetup struct {
	server        *mcp.Server
	url           string
	keys          *mcpauth.APIKeys
	admin, viewer string
	ev            *events
}

func newNotifySetup(t *testing.T, mode mcptest.Mode, install bool) *notifySetup {
	t.Helper()
	s, ev := notifyServer(t, install)
	admin, viewer := newKey(t), newKey(t)
	keys, err := mcpauth.NewAPIKeys(
		mcpauth.APIKey{Key: admin, Subject: "alice", Roles: []string{"admin"}},
		mcpauth.APIKey{Key: viewer, Subject: "alice", Roles: []string{"viewer"}},
	)
	if err != nil {
		t.Fatal(err)
	}
	opts := &mcpauth.RequireOptions{Events: ev}
	srv := serveLoopback(t, mcpauth.Require(opts, keys)(mode.Handler(s)))
	return &notifySetup{server: s, url: srv.URL, keys: keys, admin: admin, viewer: viewer, ev: ev}
}

// notifyServer is a server with two resources that clients may subscribe
// to, file:///admin/a (for admins) and file:///public/b (for viewers),
// behind a guard that Install adds, or only its Middleware.
func notifyServer(t *testing.T, install bool) (*mcp.Server, *events) {
	t.Helper()
	policy := tutorialPolicy()
	policy.Rules = append(policy.Rules,
		mcpauth.Rule{Resource: "file:///admin/*", Roles: []string{"admin"}},
		mcpauth.Rule{Resource: "file:///public/*", Roles: []string{"viewer"}},
	)
	ev := &events{}
	g, err := mcpauth.NewGuard(policy, &mcpauth.GuardOptions{Events: ev})
	if err != nil {
		t.Fatal(err)
	}
	s := mcp.NewServer(&mcp.Implementation{Name: "notify", Version: "1"}, &mcp.ServerOptions{
		SubscribeHandler:   func(context.Context, *mcp.SubscribeRequest) error { return nil },
		UnsubscribeHandler: func(context.Context, *mcp.UnsubscribeRequest) error { return nil },
	})
	for _, uri := range []string{"file:///admin/a", "file:///public/b"} {
		s.AddResource(&mcp.Resource{URI: uri, Name: uri}, func(context.Context, *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			return &mcp.ReadResourceResult{}, nil
		})
	}
	if install {
		g.Install(s)
	} else {
		s.AddReceivingMiddleware(g.Middleware())
	}
	return s, ev
}

// updates collects the resource updates a client receives.
type updates struct {
	mu  sync.Mutex
	got map[string]int
	ch  chan string
}

func (u *updates) handler(_ context.Context, req *mcp.ResourceUpdatedNotificationRequest) {
	u.mu.Lock()
	u.got[req.Params.URI]++
	u.mu.Unlock()
	u.ch <- req.Params.URI
}

func (u *updates) count(uri string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.got[uri]
}

// connectWithStream connects go-sdk's client with its standalone SSE
// stream, on which 2025-11-25 resource updates arrive.
func connectWithStream(t *testing.T, mode mcptest.Mode, url string, headers *mcptest.Headers, u *updates) *mcp.ClientSession {
	t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: "notify-test", Version: "1"}, &mcp.ClientOptions{ResourceUpdatedHandler: u.handler})
	transport := &mcp.StreamableClientTransport{Endpoint: url, HTTPClient: &http.Client{Transport: headers.RoundTripper()}}
	cs, err := c.Connect(context.Background(), transport, &mcp.ClientSessionOptions{ProtocolVersion: mode.ProtocolVersion})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// sendUntilReceived sends updates of uri until the client has one, for the
// standalone stream may not be open yet.
func sendUntilReceived(t *testing.T, s *mcp.Server, u *updates, uri string) {
	t.Helper()
	deadline := time.Now().Add(streamEndBound)
	for {
		s.ResourceUpdated(context.Background(), &mcp.ResourceUpdatedNotificationParams{URI: uri})
		select {
		case got := <-u.ch:
			if got == uri {
				return
			}
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no update of %s reached the client", uri)
		}
	}
}

// dropped counts the notifications the guard dropped for uri.
func (c *events) dropped(uri string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, e := range c.all {
		if e.Layer == "notify" && e.Outcome == mcpauth.OutcomeDenied && e.Target == uri {
			n++
		}
	}
	return n
}

// TestGuardNotificationsFollowCaller: a session subscribes to an admin-only
// resource and a public one with an admin key, then goes on with a viewer
// key of the same subject. From then on updates of the admin-only resource
// are dropped, and the public one's still arrive.
func TestGuardNotificationsFollowCaller(t *testing.T) {
	mode := mcptest.Modes[0] // 2025-11-25 with sessions: where subscriptions outlive a request
	ns := newNotifySetup(t, mode, true)
	headers := mcptest.NewHeaders("X-API-Key", ns.admin)
	u := &updates{got: map[string]int{}, ch: make(chan string, 16)}
	cs := connectWithStream(t, mode, ns.url, headers, u)
	for _, uri := range []string{"file:///admin/a", "file:///public/b"} {
		if err := cs.Subscribe(context.Background(), &mcp.SubscribeParams{URI: uri}); err != nil {
			t.Fatal(err)
		}
	}
	sendUntilReceived(t, ns.server, u, "file:///admin/a")
	before := u.count("file:///admin/a")

	headers.Set("X-API-Key", ns.viewer)
	if _, err := cs.ListTools(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.ReadResource(context.Background(), &mcp.ReadResourceParams{URI: "file:///admin/a"}); err == nil {
		t.Fatal("the viewer key read the admin-only resource")
	}
	ns.server.ResourceUpdated(context.Background(), &mcp.ResourceUpdatedNotificationParams{URI: "file:///admin/a"})
	if n := ns.ev.dropped("file:///admin/a"); n != 1 {
		t.Errorf("%d dropped updates of the admin-only resource, want 1", n)
	}
	// Updates go out in order on one stream: once the public update has
	// arrived, the admin-only one sent before it would have too.
	sendUntilReceived(t, ns.server, u, "file:///public/b")
	if got := u.count("file:///admin/a"); got != before {
		t.Errorf("the viewer key received %d updates of the admin-only resource", got-before)
	}

	// Back to the admin key: its updates arrive again.
	headers.Set("X-API-Key", ns.admin)
	if _, err := cs.ListTools(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	sendUntilReceived(t, ns.server, u, "file:///admin/a")
}

// TestGuardNotificationsStopWhenRevoked: the key that subscribed is
// revoked while the client's next stream is opened with another key and
// no request has come through the guard since: the session's current
// caller is revoked, so nothing more is delivered, not even the public
// resource's updates, until a request shows who the caller is now.
func TestGuardNotificationsStopWhenRevoked(t *testing.T) {
	mode := mcptest.Modes[0]
	ns := newNotifySetup(t, mode, true)
	headers := mcptest.NewHeaders("X-API-Key", ns.admin)
	u := &updates{got: map[string]int{}, ch: make(chan string, 16)}
	cs := connectWithStream(t, mode, ns.url, headers, u)
	for _, uri := range []string{"file:///admin/a", "file:///public/b"} {
		if err := cs.Subscribe(context.Background(), &mcp.SubscribeParams{URI: uri}); err != nil {
			t.Fatal(err)
		}
	}
	sendUntilReceived(t, ns.server, u, "file:///admin/a")
	headers.Set("X-API-Key", ns.viewer)
	ns.keys.Revoke(ns.admin)
	before := u.count("file:///admin/a")
	ns.server.ResourceUpdated(context.Background(), &mcp.ResourceUpdatedNotificationParams{URI: "file:///admin/a"})
	ns.server.ResourceUpdated(context.Background(), &mcp.ResourceUpdatedNotificationParams{URI: "file:///public/b"})
	if a, b := ns.ev.dropped("file:///admin/a"), ns.ev.dropped("file:///public/b"); a != 1 || b != 1 {
		t.Errorf("dropped %d admin-only and %d public updates, want 1 and 1", a, b)
	}
	// A request with the viewer key makes it the current caller.
	if _, err := cs.ListTools(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	sendUntilReceived(t, ns.server, u, "file:///public/b")
	if got := u.count("file:///admin/a"); got != before {
		t.Errorf("%d updates of the admin-only resource after the revocation", got-before)
	}
}

// TestGuardNotificationsListen: under 2026-07-28 a subscription lives in
// its subscriptions/listen call, whose caller the guard sees; updates of a
// resource the caller may use arrive through the filter.
func TestGuardNotificationsListen(t *testing.T) {
	mode := mcptest.Modes[1]
	ns := newNotifySetup(t, mode, true)
	u := &updates{got: map[string]int{}, ch: make(chan string, 16)}
	cs := connectWithStream(t, mode, ns.url, mcptest.NewHeaders("X-API-Key", ns.admin), u)
	go cs.Subscribe(context.Background(), &mcp.SubscribeParams{URI: "file:///admin/a"})
	sendUntilReceived(t, ns.server, u, "file:///admin/a")
	if n := ns.ev.dropped("file:///admin/a"); n != 0 {
		t.Errorf("%d updates dropped for a caller that may receive them", n)
	}
}

// TestGuardMiddlewareAloneWarns: a guard added with Middleware alone
// cannot filter notifications, and says so once.
func TestGuardMiddlewareAloneWarns(t *testing.T) {
	mode := mcptest.Modes[0]
	ns := newNotifySetup(t, mode, false)
	u := &updates{got: map[string]int{}, ch: make(chan string, 16)}
	cs := connectWithStream(t, mode, ns.url, mcptest.NewHeaders("X-API-Key", ns.admin), u)
	for range 2 {
		if err := cs.Subscribe(context.Background(), &mcp.SubscribeParams{URI: "file:///admin/a"}); err != nil {
			t.Fatal(err)
		}
	}
	ns.ev.mu.Lock()
	defer ns.ev.mu.Unlock()
	n := 0
	for _, e := range ns.ev.all {
		if e.Kind == mcpauth.EventConfiguration && e.Reason == "notifications_unfiltered" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d configuration events, want 1", n)
	}
}

// revocationReads counts the reads of revocation records in a Store.
type revocationReads struct {
	mcpauth.Store
	n atomic.Int64
}

func (s *revocationReads) Get(ctx context.Context, key string) ([]byte, error) {
	if strings.HasPrefix(key, "revoked:") {
		s.n.Add(1)
	}
	return s.Store.Get(ctx, key)
}

// TestGuardNotificationsStoreReads: a token whose revocations live in a
// shared Store is not read from it for every update that goes out on its
// session (a burst of updates to many sessions would be a read each), yet a
// revocation in this process stops the very next update.
func TestGuardNotificationsStoreReads(t *testing.T) {
	mode := mcptest.Modes[0]
	iss, err := mcpauth.NewJWTIssuer(mcpauth.JWTIssuerOptions{Issuer: "https://as.example.com", Key: []byte(strings.Repeat("k", 32)), Audience: []string{"https://mcp.example.com/mcp"}})
	if err != nil {
		t.Fatal(err)
	}
	store := &revocationReads{Store: mcpauth.NewMemoryStore()}
	verifier, err := mcpauth.NewJWTVerifier(mcpauth.JWTVerifierOptions{Issuers: []mcpauth.TrustedIssuer{iss.TrustedIssuer()}, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { verifier.Close() })
	s, ev := notifyServer(t, true)
	const uri = "file:///public/b"
	srv := serveLoopback(t, mcpauth.Require(&mcpauth.RequireOptions{Events: ev}, verifier)(mode.Handler(s)))
	tok, err := iss.Mint(mcpauth.TokenClaims{Subject: "alice", Roles: []string{"viewer"}})
	if err != nil {
		t.Fatal(err)
	}
	u := &updates{got: map[string]int{}, ch: make(chan string, 256)}
	cs := connectWithStream(t, mode, srv.URL, mcptest.NewHeaders("Authorization", "Bearer "+tok), u)
	if err := cs.Subscribe(context.Background(), &mcp.SubscribeParams{URI: uri}); err != nil {
		t.Fatal(err)
	}
	sendUntilReceived(t, s, u, uri)

	const n = 100
	before, start := store.n.Load(), time.Now()
	for range n {
		s.ResourceUpdated(context.Background(), &mcp.ResourceUpdatedNotificationParams{URI: uri})
	}
	for range n {
		select {
		case <-u.ch:
		case <-time.After(streamEndBound):
			t.Fatalf("%d of %d updates arrived", u.count(uri), n)
		}
	}
	// A read per second of the burst for the updates, and one per
	// RevocationCheckInterval (2 s) for the watcher of the open stream.
	elapsed := time.Since(start)
	allowed := 2 + 2*int64(elapsed/time.Second)
	if reads := store.n.Load() - before; reads > allowed {
		t.Errorf("%d updates in %v read the store %d times, want at most %d", n, elapsed.Round(time.Millisecond), reads, allowed)
	}

	// Revoked here: the next update is dropped, however recent the last
	// read.
	if err := verifier.Revoke(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	s.ResourceUpdated(context.Background(), &mcp.ResourceUpdatedNotificationParams{URI: uri})
	if d := ev.dropped(uri); d != 1 {
		t.Errorf("after the revocation %d updates were dropped, want 1", d)
	}
}
