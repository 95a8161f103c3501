package mcpauth_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mcpauth/mcpauth"
	"github.com/mcpauth/mcpauth/internal/mcptest"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func scopePolicy() *mcpauth.Policy {
	p := tutorialPolicy()
	p.Rules[1].Scopes = []string{"tools:write"}                // write-data: editor + tools:write
	p.Rules[3].Scopes = []string{"tools:admin", "tools:write"} // manage-users: admin + both
	return p
}

// unreadable is a body that records being read.
type unreadable struct{ read bool }

func (u *unreadable) Read([]byte) (int, error) { u.read = true; return 0, errors.New("read") }
func (u *unreadable) Close() error             { return nil }

func TestRequireScopes(t *testing.T) {
	const rm = "https://mcp.example.com/.well-known/oauth-protected-resource"
	g, err := mcpauth.NewGuard(scopePolicy(), &mcpauth.GuardOptions{MaxPeekBytes: 512})
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]mcpauth.APIKey{}
	var list []mcpauth.APIKey
	for name, k := range map[string]mcpauth.APIKey{
		"editor":        {Subject: "e", Roles: []string{"editor"}},
		"editor+write":  {Subject: "ew", Roles: []string{"editor"}, Scopes: []string{"tools:write"}},
		"viewer":        {Subject: "v", Roles: []string{"viewer"}},
		"admin":         {Subject: "a", Roles: []string{"admin"}},
		"admin+write":   {Subject: "aw", Roles: []string{"admin"}, Scopes: []string{"tools:write"}},
		"admin+all":     {Subject: "aa", Roles: []string{"admin"}, Scopes: []string{"tools:write", "tools:admin"}},
		"viewer+scopes": {Subject: "vs", Roles: []string{"viewer"}, Scopes: []string{"tools:write"}},
	} {
		k.Key, _ = mcpauth.GenerateAPIKey()
		keys[name] = k
		list = append(list, k)
	}
	ak, err := mcpauth.NewAPIKeys(list...)
	if err != nil {
		t.Fatal(err)
	}
	var nextBody string
	var nextCalled bool
	h := mcpauth.Require(nil, ak)(g.RequireScopes(&mcpauth.RequireOptions{ResourceMetadataURL: rm})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		nextCalled = true
		b, _ := io.ReadAll(r.Body)
		nextBody = string(b)
	})))

	call := func(tool string) string {
		return `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` + tool + `","arguments":{}}}`
	}
	long := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"write-data","arguments":{"pad":"` + strings.Repeat("x", 600) + `"}}}`
	tests := []struct {
		name    string
		who     string
		body    string
		headers map[string]string
		method  string
		chunked bool   // no Content-Length: the guard must read to find out
		scope   string // the challenge's scope; empty means passed on
	}{
		{name: "missing scope", who: "editor", body: call("write-data"), scope: "tools:write"},
		{name: "has scope", who: "editor+write", body: call("write-data")},
		{name: "missing role is for the MCP layer", who: "viewer", body: call("write-data")},
		{name: "role and scope missing", who: "viewer", body: call("manage-users")},
		{name: "scope without role", who: "viewer+scopes", body: call("write-data")},
		{name: "all scopes named", who: "admin+write", body: call("manage-users"), scope: "tools:admin tools:write"},
		{name: "all scopes held", who: "admin+all", body: call("manage-users")},
		{name: "no scopes required", who: "viewer", body: call("read-data")},
		{name: "no rule", who: "editor", body: call("nope")},
		{name: "not a call", who: "editor", body: `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`},
		{name: "batch", who: "admin", body: "[" + call("read-data") + "," + call("write-data") + "," + call("manage-users") + "]", scope: "tools:write tools:admin"},
		{name: "batch allowed", who: "admin+all", body: "[" + call("write-data") + "," + call("manage-users") + "]"},
		{name: "malformed", who: "editor", body: `{"jsonrpc":"2.0","method":"tools/call","params":{"name":"write-data"`},
		{name: "params not an object", who: "editor", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[1]}`},
		{name: "keys are case-sensitive", who: "editor", body: `{"jsonrpc":"2.0","id":1,"METHOD":"tools/call","params":{"name":"write-data"}}`},
		{name: "too long to peek", who: "editor", body: long},
		{name: "too long to peek, length unknown", who: "editor", body: long, chunked: true},
		{name: "empty body", who: "editor", body: ""},
		{name: "GET", who: "editor", method: http.MethodGet},
		{name: "old protocol ignores Mcp-Method", who: "editor", body: call("write-data"),
			headers: map[string]string{"Mcp-Protocol-Version": "2025-11-25", "Mcp-Method": "tools/list"}, scope: "tools:write"},
	}
	for _, tt := range tests {
		nextCalled, nextBody = false, ""
		method := tt.method
		if method == "" {
			method = http.MethodPost
		}
		req := httptest.NewRequest(method, "/mcp", strings.NewReader(tt.body))
		if tt.chunked {
			req.ContentLength = -1
		}
		req.Header.Set("X-API-Key", keys[tt.who].Key)
		for k, v := range tt.headers {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if tt.scope == "" {
			if !nextCalled || rec.Code != http.StatusOK {
				t.Errorf("%s: status %d, next called %v; want passed on", tt.name, rec.Code, nextCalled)
			}
			if nextBody != tt.body {
				t.Errorf("%s: next read %d bytes, want the %d sent", tt.name, len(nextBody), len(tt.body))
			}
			continue
		}
		if nextCalled || rec.Code != http.StatusForbidden {
			t.Errorf("%s: status %d, next called %v; want 403", tt.name, rec.Code, nextCalled)
			continue
		}
		want := `Bearer resource_metadata="` + rm + `", error="insufficient_scope", error_description="The caller is not allowed to do this.", scope="` + tt.scope + `"`
		if got := rec.Header().Get("WWW-Authenticate"); got != want {
			t.Errorf("%s: WWW-Authenticate\n got %s\nwant %s", tt.name, got, want)
		}
		if !strings.Contains(rec.Body.String(), `"error":"insufficient_scope"`) {
			t.Errorf("%s: body %s", tt.name, rec.Body)
		}
	}

	// Under 2026-07-28 the headers decide and the body is never read.
	for _, tt := range []struct {
		who, name string
		status    int
	}{{"editor", "write-data", http.StatusForbidden}, {"editor+write", "write-data", http.StatusOK}, {"viewer", "read-data", http.StatusOK}} {
		nextCalled = false
		body := &unreadable{}
		req := httptest.NewRequest(http.MethodPost, "/mcp", nil)
		req.Body = body
		req.Header.Set("X-API-Key", keys[tt.who].Key)
		req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
		req.Header.Set("Mcp-Method", "tools/call")
		req.Header.Set("Mcp-Name", tt.name)
		rec := httptest.NewRecorder()
		// A handler that does not read the body, to see whether the guard did.
		hh := mcpauth.Require(nil, ak)(g.RequireScopes(nil)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { nextCalled = true })))
		hh.ServeHTTP(rec, req)
		if rec.Code != tt.status || nextCalled != (tt.status == http.StatusOK) || body.read {
			t.Errorf("headers %s/%s: status %d, next %v, body read %v", tt.who, tt.name, rec.Code, nextCalled, body.read)
		}
	}
}

// TestRequireScopesEndToEnd: go-sdk's client, refused with 403 at the HTTP
// layer for want of a scope, in every mode.
func TestRequireScopesEndToEnd(t *testing.T) {
	for _, mode := range mcptest.Modes {
		t.Run(mode.Name, func(t *testing.T) {
			f := newRBACFixture(t, mode, scopePolicy(), nil, true, false, map[string][]string{"admin": {"tools:write"}})
			editor := f.connect(t, mode, "editor")
			// The list shows only what the caller may call, scopes included.
			if names, _ := mcptest.ToolNames(t, editor); strings.Join(names, ",") != "read-data" {
				t.Errorf("editor without tools:write lists %v", names)
			}
			// go-sdk's client closes its session on a 403 it cannot step up
			// from, so each refusal comes last on its session.
			_, err := editor.CallTool(context.Background(), &mcp.CallToolParams{Name: "write-data", Arguments: toolArgs["write-data"]})
			if err == nil || !strings.Contains(err.Error(), "Forbidden") {
				t.Errorf("editor without tools:write: %v", err)
			}
			admin := f.connect(t, mode, "admin")
			if res, text := call(t, admin, "write-data", toolArgs["write-data"]); res.IsError {
				t.Errorf("admin with tools:write: %q", text)
			}
			_, err = admin.CallTool(context.Background(), &mcp.CallToolParams{Name: "manage-users", Arguments: toolArgs["manage-users"]})
			if err == nil {
				t.Error("admin without tools:admin called manage-users")
			}
		})
	}
}

// TestRequireScopesSubscriptions: subscribing to a resource whose rule
// requires a scope the caller lacks gets the 403 step-up challenge, whether
// by resources/subscribe or by 2026-07-28's subscriptions/listen, which names
// its resources in the body only.
func TestRequireScopesSubscriptions(t *testing.T) {
	policy := tutorialPolicy()
	policy.Rules = append(policy.Rules,
		mcpauth.Rule{Resource: "file:///public/*", Roles: []string{"viewer"}},
		mcpauth.Rule{Resource: "file:///private/*", Roles: []string{"viewer"}, Scopes: []string{"files:private"}},
	)
	g, err := mcpauth.NewGuard(policy, nil)
	if err != nil {
		t.Fatal(err)
	}
	plain, scoped := newKey(t), newKey(t)
	ak, err := mcpauth.NewAPIKeys(
		mcpauth.APIKey{Key: plain, Subject: "v", Roles: []string{"viewer"}},
		mcpauth.APIKey{Key: scoped, Subject: "vs", Roles: []string{"viewer"}, Scopes: []string{"files:private"}},
	)
	if err != nil {
		t.Fatal(err)
	}
	var nextCalled bool
	h := mcpauth.Require(quiet, ak)(g.RequireScopes(quiet)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { nextCalled = true })))
	listen := func(notifications string) string {
		return `{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":` + notifications + `}}`
	}
	subscribe := func(uri string) string {
		return `{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"uri":"` + uri + `"}}`
	}
	for _, tc := range []struct {
		name, key, version, method, body string
		refused                          bool
	}{
		{"listen, private", plain, "2026-07-28", "subscriptions/listen", listen(`{"resourceSubscriptions":["file:///private/b"]}`), true},
		{"listen, public and private", plain, "2026-07-28", "subscriptions/listen", listen(`{"resourceSubscriptions":["file:///public/a","file:///private/b"]}`), true},
		{"listen, public", plain, "2026-07-28", "subscriptions/listen", listen(`{"resourceSubscriptions":["file:///public/a"]}`), false},
		{"listen, private, with the scope", scoped, "2026-07-28", "subscriptions/listen", listen(`{"resourceSubscriptions":["file:///private/b"]}`), false},
		{"listen for list changes only", plain, "2026-07-28", "subscriptions/listen", listen(`{"toolsListChanged":true}`), false},
		{"listen, resourceSubscriptions not a list", plain, "2026-07-28", "subscriptions/listen", listen(`{"resourceSubscriptions":"file:///private/b"}`), false},
		{"listen without the headers", plain, "", "", listen(`{"resourceSubscriptions":["file:///private/b"]}`), true},
		{"resources/subscribe, private", plain, "2025-11-25", "", subscribe("file:///private/b"), true},
		{"resources/subscribe, public", plain, "2025-11-25", "", subscribe("file:///public/a"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nextCalled = false
			req := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(tc.body))
			req.Header.Set("X-API-Key", tc.key)
			if tc.version != "" {
				req.Header.Set("Mcp-Protocol-Version", tc.version)
			}
			if tc.method != "" {
				req.Header.Set("Mcp-Method", tc.method)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if !tc.refused {
				if rec.Code != http.StatusOK || !nextCalled {
					t.Fatalf("status %d, next called %v; want passed on", rec.Code, nextCalled)
				}
				return
			}
			if rec.Code != http.StatusForbidden || nextCalled {
				t.Fatalf("status %d, next called %v; want 403", rec.Code, nextCalled)
			}
			if got := rec.Header().Get("WWW-Authenticate"); !strings.Contains(got, `error="insufficient_scope"`) || !strings.Contains(got, `scope="files:private"`) {
				t.Errorf("WWW-Authenticate %q", got)
			}
		})
	}
}

// TestRequireScopesWithResource checks that the step-up challenge points to
// the document a ProtectedResource serves when only Resource is set, as
// Require's own challenges do, and never names offline_access.
func TestRequireScopesWithResource(t *testing.T) {
	pr, err := mcpauth.NewProtectedResource(mcpauth.ProtectedResourceOptions{
		Resource:             "https://mcp.example.com/mcp",
		AuthorizationServers: []string{"https://auth.example.com"},
		ScopesSupported:      []string{"tools:read", "tools:write"},
	})
	if err != nil {
		t.Fatal(err)
	}
	g, err := mcpauth.NewGuard(scopePolicy(), nil)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := mcpauth.GenerateAPIKey()
	ak, err := mcpauth.NewAPIKeys(mcpauth.APIKey{Key: key, Subject: "e", Roles: []string{"editor"}})
	if err != nil {
		t.Fatal(err)
	}
	opts := &mcpauth.RequireOptions{Resource: pr}
	h := mcpauth.Require(opts, ak)(g.RequireScopes(opts)(http.NotFoundHandler()))
	r := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"write-data","arguments":{}}}`))
	r.Header.Set("X-API-Key", key)
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	challenge := w.Header().Get("WWW-Authenticate")
	if w.Code != http.StatusForbidden || !strings.Contains(challenge, `resource_metadata="`+pr.MetadataURL()+`"`) || !strings.Contains(challenge, `scope="tools:write"`) {
		t.Fatalf("%d %q, want 403 with resource_metadata %s and scope tools:write", w.Code, challenge, pr.MetadataURL())
	}
}
