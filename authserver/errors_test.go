package authserver

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpauth/mcpauth"
)

// errStoreDown is what faultStore returns for a failed call.
var errStoreDown = errors.New("store down (test)")

// faultStore is a store whose calls fail when fail says so: a store that
// is down, or one that fails at one step of an exchange.
type faultStore struct {
	mcpauth.Store
	mu   sync.Mutex
	fail func(op, key string) bool // nil: nothing fails
}

func (f *faultStore) setFail(fail func(op, key string) bool) {
	f.mu.Lock()
	f.fail = fail
	f.mu.Unlock()
}

func (f *faultStore) failed(op, key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fail != nil && f.fail(op, key)
}

func (f *faultStore) Get(ctx context.Context, key string) ([]byte, error) {
	if f.failed("Get", key) {
		return nil, errStoreDown
	}
	return f.Store.Get(ctx, key)
}

func (f *faultStore) Set(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	if f.failed("Set", key) {
		return errStoreDown
	}
	return f.Store.Set(ctx, key, v, ttl)
}

func (f *faultStore) Create(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	if f.failed("Create", key) {
		return errStoreDown
	}
	return f.Store.Create(ctx, key, v, ttl)
}

func (f *faultStore) Take(ctx context.Context, key string) ([]byte, error) {
	if f.failed("Take", key) {
		return nil, errStoreDown
	}
	return f.Store.Take(ctx, key)
}

func (f *faultStore) Delete(ctx context.Context, key string) error {
	if f.failed("Delete", key) {
		return errStoreDown
	}
	return f.Store.Delete(ctx, key)
}

func (f *faultStore) Incr(ctx context.Context, key string, ttl time.Duration) (int64, error) {
	if f.failed("Incr", key) {
		return 0, errStoreDown
	}
	return f.Store.Incr(ctx, key, ttl)
}

func (f *faultStore) List(ctx context.Context, prefix string, fn func(string, []byte) error) error {
	if f.failed("List", prefix) {
		return errStoreDown
	}
	return f.Store.List(ctx, prefix, fn)
}

func always(string, string) bool { return true }

// newFaultEnv is newEnv on a faultStore over env.store, with an endpoint
// at /mcp that the server's verifier protects.
func newFaultEnv(t *testing.T, configure ...func(o *Options)) (*testEnv, *faultStore) {
	t.Helper()
	fs := &faultStore{}
	env := newEnv(t, func(o *Options) {
		fs.Store = o.Store
		o.Store = fs
		for _, c := range configure {
			c(o)
		}
	})
	v, err := env.as.Verifier()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	env.mux.Handle(testResourceDir, mcpauth.Require(&mcpauth.RequireOptions{Events: discardEvents{}}, v)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok"))
	})))
	return env, fs
}

// checkUnavailable wants a 503 with Retry-After and, for a JSON endpoint,
// the temporarily_unavailable error; never the store's error text.
func checkUnavailable(t *testing.T, name string, resp *http.Response, body string, m map[string]any) {
	t.Helper()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("%s: %d %.300s, want 503", name, resp.StatusCode, body)
		return
	}
	if resp.Header.Get("Retry-After") == "" {
		t.Errorf("%s: 503 without Retry-After", name)
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") && m["error"] != "temporarily_unavailable" {
		t.Errorf("%s: body %v", name, m)
	}
	if strings.Contains(body, errStoreDown.Error()) {
		t.Errorf("%s: the store's error is in the body", name)
	}
}

// TestStoreDownEveryEndpoint: with the store failing every call, every
// endpoint that needs it answers 503 with Retry-After (never 500, never a
// pass) and writes nothing, while those that need none keep working; once
// it is back, the refresh token, the code,
// the login in progress and the access token of before all still work.
func TestStoreDownEveryEndpoint(t *testing.T) {
	env, fs := newFaultEnv(t)
	tokens := env.tokensFor("tools:read")
	access, refresh := tokens["access_token"].(string), tokens["refresh_token"].(string)
	code, verifier := env.codeFor("app", loopbackRedirect)
	_, reg := env.register(`{"redirect_uris":["http://127.0.0.1/cb"],"token_endpoint_auth_method":"none"}`, nil)
	registered := reg["client_id"].(string)

	// A login in progress: the login form, and a consent page.
	b := newBrowser(t)
	q := env.authorizeQuery()
	loginPage := b.get(env.url("/authorize?" + q.Encode()))
	b2 := newBrowser(t)
	consentPage := b2.login(env.srv.URL, b2.get(env.url("/authorize?"+q.Encode())), "alice", testPassword)
	if loginPage.status != 200 || !strings.Contains(consentPage.body, ">Approve</button>") {
		t.Fatalf("login %d, consent %d", loginPage.status, consentPage.status)
	}

	before := snapshot(t, env.store)
	fs.setFail(always)
	form := func(kv ...string) url.Values {
		v := url.Values{}
		for i := 0; i < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	type call struct {
		name string
		do   func() (*http.Response, string, map[string]any)
	}
	post := func(path string, v url.Values, h http.Header) func() (*http.Response, string, map[string]any) {
		return func() (*http.Response, string, map[string]any) {
			resp, m := env.post(path, v, h)
			return resp, "", m
		}
	}
	pageCall := func(p func() *page) func() (*http.Response, string, map[string]any) {
		return func() (*http.Response, string, map[string]any) {
			pg := p()
			return &http.Response{StatusCode: pg.status, Header: pg.header}, pg.body, nil
		}
	}
	calls := []call{
		{"token refresh_token", post("/token", form("grant_type", "refresh_token", "refresh_token", refresh, "client_id", "app"), nil)},
		{"token authorization_code", post("/token", form("grant_type", "authorization_code", "code", code, "code_verifier", verifier, "client_id", "app", "redirect_uri", loopbackRedirect), nil)},
		{"token of a registered client", post("/token", form("grant_type", "refresh_token", "refresh_token", refresh, "client_id", registered), nil)},
		{"register", func() (*http.Response, string, map[string]any) {
			resp, m := env.register(`{"redirect_uris":["http://127.0.0.1/cb"],"token_endpoint_auth_method":"none"}`, nil)
			return resp, "", m
		}},
		{"revoke refresh token", post("/revoke", form("token", refresh, "client_id", "app"), nil)},
		{"revoke access token", post("/revoke", form("token", access, "client_id", "app"), nil)},
		{"introspect refresh token", post("/introspect", form("token", refresh), basicAuth("auditor", otherSecret))},
		{"introspect access token", post("/introspect", form("token", access), basicAuth("auditor", otherSecret))},
		{"authorize", pageCall(func() *page { return newBrowser(t).get(env.url("/authorize?" + q.Encode())) })},
		{"authorize, registered client", pageCall(func() *page {
			q := env.authorizeQuery()
			q.Set("client_id", registered)
			q.Set("redirect_uri", "http://127.0.0.1/cb")
			return newBrowser(t).get(env.url("/authorize?" + q.Encode()))
		})},
		{"login", pageCall(func() *page { return b.login(env.srv.URL, loginPage, "alice", testPassword) })},
		{"consent", pageCall(func() *page { return b2.decide(env.srv.URL, consentPage, "approve") })},
		{"resource", func() (*http.Response, string, map[string]any) {
			req, _ := http.NewRequest("GET", env.url(testResourceDir), nil)
			req.Header.Set("Authorization", "Bearer "+access)
			resp, m := env.do(req)
			return resp, "", m
		}},
	}
	for _, c := range calls {
		resp, body, m := c.do()
		if c.name == "authorize" {
			// The client and its redirect URI are known without the
			// store: the error goes back to the client (RFC 6749
			// §4.1.2.1), as temporarily_unavailable.
			if loc, _ := url.Parse(resp.Header.Get("Location")); resp.StatusCode != http.StatusSeeOther || loc == nil || loc.Query().Get("error") != "temporarily_unavailable" {
				t.Errorf("authorize: %d %q, want a redirect with temporarily_unavailable", resp.StatusCode, resp.Header.Get("Location"))
			}
			continue
		}
		checkUnavailable(t, c.name, resp, body, m)
	}
	// What needs no store keeps working: the metadata, the key set (the
	// current keys are held in memory) and client credentials for a
	// pre-registered client.
	for _, path := range []string{"/.well-known/oauth-authorization-server", "/jwks.json"} {
		if r, err := httpGet(env.url(path)); err != nil || r.status != 200 {
			t.Errorf("%s while the store is down: %v %v", path, r, err)
		}
	}
	if resp, m := env.post("/token", form("grant_type", "client_credentials", "scope", "tools:read"), basicAuth("machine", testSecret)); resp.StatusCode != 200 {
		t.Errorf("client credentials while the store is down: %d %v", resp.StatusCode, m)
	}
	if d := diff(before, snapshot(t, env.store)); len(d) != 0 {
		t.Errorf("the store changed while it was down: %v", d)
	}

	// Back: everything of before works, without a restart.
	fs.setFail(nil)
	if st, m := env.refreshWith(refresh); st != 200 {
		t.Errorf("refresh after the outage: %d %v", st, m)
	}
	resp, m := env.post("/token", form("grant_type", "authorization_code", "code", code, "code_verifier", verifier, "client_id", "app", "redirect_uri", loopbackRedirect), nil)
	if resp.StatusCode != 200 {
		t.Errorf("code after the outage: %d %v", resp.StatusCode, m)
	}
	if p := b2.decide(env.srv.URL, consentPage, "approve"); p.status != http.StatusSeeOther {
		t.Errorf("consent after the outage: %d %.300s", p.status, p.body)
	}
	req, _ := http.NewRequest("GET", env.url(testResourceDir), nil)
	req.Header.Set("Authorization", "Bearer "+access)
	if resp, _ := env.do(req); resp.StatusCode != 200 {
		t.Errorf("resource after the outage: %d", resp.StatusCode)
	}
}

// TestStoreFailsMidExchange: the store fails at one write after the code
// or refresh token was taken; the client gets 503, and its retry with the
// same code or token works, because what was taken is put back.
func TestStoreFailsMidExchange(t *testing.T) {
	for _, tt := range []struct {
		name string
		op   string
		kind string // the key kind whose write fails
		code bool   // the code grant; else a refresh
	}{
		{"refresh: new refresh token", "Create", keyRefresh, false},
		{"refresh: family", "Set", keyFamily, false},
		{"refresh: used mark", "Set", keyRefreshUsed, false},
		{"code: new refresh token", "Create", keyRefresh, true},
		{"code: family", "Set", keyFamily, true},
		{"code: used mark", "Set", keyCodeUsed, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env, fs := newFaultEnv(t)
			var v url.Values
			if tt.code {
				code, verifier := env.codeFor("app", loopbackRedirect)
				v = url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "client_id": {"app"}, "redirect_uri": {loopbackRedirect}}
			} else {
				tokens := env.tokensFor("tools:read")
				v = url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tokens["refresh_token"].(string)}, "client_id": {"app"}}
			}
			once := true
			fs.setFail(func(op, key string) bool {
				if once && op == tt.op && strings.HasPrefix(key, tt.kind+":") {
					once = false
					return true
				}
				return false
			})
			resp, m := env.post("/token", v, nil)
			checkUnavailable(t, "first try", resp, "", m)
			if once {
				t.Fatal("the fault was not reached")
			}
			resp, m = env.post("/token", v, nil)
			if resp.StatusCode != 200 || m["access_token"] == nil {
				t.Fatalf("retry: %d %v", resp.StatusCode, m)
			}
			// The retry rotated or redeemed it: it is single use again.
			if resp, m = env.post("/token", v, nil); resp.StatusCode != 400 || m["error"] != "invalid_grant" {
				t.Errorf("third use: %d %v", resp.StatusCode, m)
			}
		})
	}
}

// TestStoreFailsInGraceRedemption: a grace redemption (the client lost
// the response of a rotation and presents the old token again) whose mark
// of either token fails gets 503, and the client's retry is a grace
// redemption again: the family is not revoked as for reuse.
func TestStoreFailsInGraceRedemption(t *testing.T) {
	for _, mark := range []string{"presented", "successor"} {
		t.Run(mark, func(t *testing.T) {
			env, fs := newFaultEnv(t, func(o *Options) { o.RefreshGracePeriod = 30 * time.Second })
			old := env.tokensFor("")["refresh_token"].(string)
			st, m := env.refreshWith(old)
			if st != 200 {
				t.Fatalf("rotation: %d %v", st, m)
			}
			failing := hashKey(keyRefreshUsed, old)
			if mark == "successor" {
				failing = hashKey(keyRefreshUsed, m["refresh_token"].(string)) // the lost response
			}
			once := true
			fs.setFail(func(op, key string) bool {
				if once && op == "Set" && key == failing {
					once = false
					return true
				}
				return false
			})
			resp, m := env.post("/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {old}, "client_id": {"app"}}, nil)
			checkUnavailable(t, "grace redemption", resp, "", m)
			if once {
				t.Fatal("the fault was not reached")
			}
			st, m = env.refreshWith(old)
			if st != 200 {
				t.Fatalf("retry of the grace redemption: %d %v", st, m)
			}
			if st, m := env.refreshWith(m["refresh_token"].(string)); st != 200 {
				t.Errorf("the family after the retry: %d %v", st, m)
			}
		})
	}
}
