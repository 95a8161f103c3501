package authserver

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpauth/mcpauth"
)

// fakeClock is a clock a test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

// newFakeClock starts a minute into today (UTC), so that a rotation
// period of a day or a divisor of one starts a minute before.
func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Now().UTC().Truncate(24 * time.Hour).Add(time.Minute)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Test secrets: 32 characters or more, as a real one would be.
const (
	testSecret      = "test-secret-0123456789abcdefghijklmnopqrstuvwxyz"
	otherSecret     = "other-secret-0123456789abcdefghijklmnopqrstuvwxy"
	testIterations  = 1000 // PBKDF2 iterations in tests; the default is 600,000
	testPassword    = "correct horse battery staple"
	testResourceDir = "/mcp"
)

// testEnv is an authorization server on a loopback test server, whose
// issuer is the test server's URL.
type testEnv struct {
	t      *testing.T
	srv    *httptest.Server
	as     *Server
	opts   *Options
	store  *mcpauth.MemoryStore
	clock  *fakeClock
	events *eventLog
	// mux serves the authorization server at "/" and whatever a test adds.
	mux *http.ServeMux
}

// eventLog keeps the events a server reported.
type eventLog struct {
	mu     sync.Mutex
	events []mcpauth.Event
}

func (l *eventLog) Record(_ context.Context, e mcpauth.Event) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
}

func (l *eventLog) find(kind mcpauth.EventKind, outcome mcpauth.Outcome) []mcpauth.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []mcpauth.Event
	for _, e := range l.events {
		if e.Kind == kind && (outcome == "" || e.Outcome == outcome) {
			out = append(out, e)
		}
	}
	return out
}

func (l *eventLog) all() []mcpauth.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

// newEnv starts a server with test defaults, changed by configure.
func newEnv(t *testing.T, configure func(o *Options)) *testEnv {
	t.Helper()
	env := &testEnv{t: t, store: mcpauth.NewMemoryStore(), clock: newFakeClock(), events: &eventLog{}, mux: http.NewServeMux()}
	var handler http.Handler = http.NotFoundHandler()
	var mu sync.RWMutex
	env.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.RLock()
		h := handler
		mu.RUnlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(env.srv.Close)
	opts := &Options{
		Issuer:    env.srv.URL,
		Resources: []string{env.srv.URL + testResourceDir},
		Scopes:    []string{"tools:read", "tools:write", "admin"},
		// tools:read alone is granted when a request names no scope.
		DefaultScopes: []string{"tools:read"},
		Clients: []Client{
			{ID: "machine", Secret: testSecret, Scopes: []string{"tools:read", "tools:write"}, Roles: []string{"service"}},
			{ID: "auditor", Secret: otherSecret, GrantTypes: []string{grantClientCredentials}, Introspect: true},
			{ID: "app", Name: "Test App", RedirectURIs: []string{"http://127.0.0.1/callback", "https://app.example/cb"}},
			{ID: "webapp", Name: "Web App", Secret: testSecret + "-web", RedirectURIs: []string{"https://web.example/cb"}},
		},
		Users:  testUsers(t),
		Store:  env.store,
		Secret: []byte(testSecret),
		Events: env.events,
		Clock:  env.clock.Now,
	}
	if configure != nil {
		configure(opts)
	}
	as, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	env.as, env.opts = as, opts
	env.mux.Handle("/", as)
	mu.Lock()
	handler = env.mux
	mu.Unlock()
	return env
}

func (env *testEnv) url(path string) string { return env.srv.URL + path }

// post sends a form to path and decodes the JSON answer.
func (env *testEnv) post(path string, form url.Values, header http.Header) (*http.Response, map[string]any) {
	env.t.Helper()
	req, err := http.NewRequest("POST", env.url(path), strings.NewReader(form.Encode()))
	if err != nil {
		env.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	maps.Copy(req.Header, header)
	return env.do(req)
}

func (env *testEnv) do(req *http.Request) (*http.Response, map[string]any) {
	env.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		env.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if len(b) > 0 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(b, &m); err != nil {
			env.t.Fatalf("response %q: %v", b, err)
		}
	}
	return resp, m
}

// snapshot returns the store's contents.
func snapshot(t *testing.T, s mcpauth.Store) map[string]string {
	t.Helper()
	out := map[string]string{}
	if err := s.List(context.Background(), "", func(k string, v []byte) error {
		out[k] = string(v)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// diff describes how two snapshots differ, key by key: "+k", "-k", "~k".
func diff(before, after map[string]string) []string {
	var out []string
	for k, v := range after {
		if old, ok := before[k]; !ok {
			out = append(out, "+"+k)
		} else if old != v {
			out = append(out, "~"+k)
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			out = append(out, "-"+k)
		}
	}
	slices.Sort(out)
	return out
}

// kinds reduces a diff to its kinds of key: "+as.refresh", "~as.family".
func kinds(d []string) []string {
	var out []string
	for _, k := range d {
		kind, _, _ := strings.Cut(k, ":")
		if !slices.Contains(out, kind) {
			out = append(out, kind)
		}
	}
	slices.Sort(out)
	return out
}

func basicAuth(id, secret string) http.Header {
	req, _ := http.NewRequest("GET", "/", nil)
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	return http.Header{"Authorization": req.Header["Authorization"]}
}

type httpResult struct {
	status int
	header http.Header
	body   []byte
}

func httpGet(u string) (*httpResult, error) {
	resp, err := http.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return &httpResult{resp.StatusCode, resp.Header, b}, err
}

// decodeSegment decodes one base64url JSON segment of a JWT into v.
func decodeSegment(t *testing.T, seg string, v any) {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

// claims returns a token's claims, unverified.
func claims(t *testing.T, token string) map[string]any {
	t.Helper()
	var m map[string]any
	decodeSegment(t, strings.Split(token, ".")[1], &m)
	return m
}

func httpPostForm(u string, form url.Values) (int, error) {
	resp, err := http.PostForm(u, form)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// waitFor polls cond for a few seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
