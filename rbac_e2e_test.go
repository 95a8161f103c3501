package mcpauth_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/mcpauth/mcpauth"
	"github.com/mcpauth/mcpauth/internal/mcptest"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// store is the tutorial's in-memory data store.
type store struct {
	mu    sync.Mutex
	data  map[string]string
	users map[string]string
}

type keyIn struct {
	Key string `json:"key"`
}
type writeIn struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}
type userIn struct {
	User string `json:"user"`
	Role string `json:"role"`
}
type result struct {
	OK    bool   `json:"ok"`
	Value string `json:"value,omitempty"`
}

// addTutorialTools adds the tutorial's four tools to s, each passed through
// wrap (for the typed-wrapper form) when wrap is not nil.
func addTutorialTools(s *mcp.Server, g *mcpauth.Guard, wrap bool) *store {
	st := &store{data: map[string]string{"greeting": "hello"}, users: map[string]string{}}
	w1 := func(h mcp.ToolHandlerFor[keyIn, result]) mcp.ToolHandlerFor[keyIn, result] {
		if wrap {
			return mcpauth.GuardTool(g, h)
		}
		return h
	}
	w2 := func(h mcp.ToolHandlerFor[writeIn, result]) mcp.ToolHandlerFor[writeIn, result] {
		if wrap {
			return mcpauth.GuardTool(g, h)
		}
		return h
	}
	w3 := func(h mcp.ToolHandlerFor[userIn, result]) mcp.ToolHandlerFor[userIn, result] {
		if wrap {
			return mcpauth.GuardTool(g, h)
		}
		return h
	}
	mcp.AddTool(s, &mcp.Tool{Name: "read-data"}, w1(func(_ context.Context, _ *mcp.CallToolRequest, in keyIn) (*mcp.CallToolResult, result, error) {
		st.mu.Lock()
		defer st.mu.Unlock()
		v, ok := st.data[in.Key]
		return nil, result{OK: ok, Value: v}, nil
	}))
	mcp.AddTool(s, &mcp.Tool{Name: "write-data"}, w2(func(_ context.Context, _ *mcp.CallToolRequest, in writeIn) (*mcp.CallToolResult, result, error) {
		st.mu.Lock()
		defer st.mu.Unlock()
		st.data[in.Key] = in.Value
		return nil, result{OK: true}, nil
	}))
	mcp.AddTool(s, &mcp.Tool{Name: "delete-data"}, w1(func(_ context.Context, _ *mcp.CallToolRequest, in keyIn) (*mcp.CallToolResult, result, error) {
		st.mu.Lock()
		defer st.mu.Unlock()
		_, ok := st.data[in.Key]
		delete(st.data, in.Key)
		return nil, result{OK: ok}, nil
	}))
	mcp.AddTool(s, &mcp.Tool{Name: "manage-users"}, w3(func(_ context.Context, _ *mcp.CallToolRequest, in userIn) (*mcp.CallToolResult, result, error) {
		st.mu.Lock()
		defer st.mu.Unlock()
		st.users[in.User] = in.Role
		return nil, result{OK: true}, nil
	}))
	return st
}

// rbacFixture is the tutorial server behind Require and the guard, with one
// API key per role.
type rbacFixture struct {
	keys  map[string]string // role -> key
	url   string
	store *store
}

func newRBACFixture(t *testing.T, mode mcptest.Mode, policy *mcpauth.Policy, opts *mcpauth.GuardOptions, middleware, wrap bool, scopes map[string][]string) *rbacFixture {
	t.Helper()
	g, err := mcpauth.NewGuard(policy, opts)
	if err != nil {
		t.Fatal(err)
	}
	s := mcp.NewServer(&mcp.Implementation{Name: "rbac", Version: "1"}, nil)
	st := addTutorialTools(s, g, wrap)
	if err := g.Validate(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	if middleware {
		s.AddReceivingMiddleware(g.Middleware())
	}
	f := &rbacFixture{keys: map[string]string{}, store: st}
	var keys []mcpauth.APIKey
	for _, role := range []string{"viewer", "editor", "admin"} {
		k, err := mcpauth.GenerateAPIKey()
		if err != nil {
			t.Fatal(err)
		}
		f.keys[role] = k
		keys = append(keys, mcpauth.APIKey{Key: k, Subject: role + "-user", Roles: []string{role}, Scopes: scopes[role]})
	}
	ak, err := mcpauth.NewAPIKeys(keys...)
	if err != nil {
		t.Fatal(err)
	}
	h := mcpauth.Require(nil, ak)(g.RequireScopes(nil)(mode.Handler(s)))
	f.url = mcptest.Serve(t, h).URL
	return f
}

func (f *rbacFixture) connect(t *testing.T, mode mcptest.Mode, role string) *mcp.ClientSession {
	t.Helper()
	cs, err := mcptest.Connect(t, mode, f.url, mcptest.NewHeaders("X-API-Key", f.keys[role]))
	if err != nil {
		t.Fatalf("%s: connect: %v", role, err)
	}
	return cs
}

func call(t *testing.T, cs *mcp.ClientSession, tool string, args map[string]any) (*mcp.CallToolResult, string) {
	t.Helper()
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		t.Fatalf("calling %s: %v", tool, err)
	}
	var text strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			text.WriteString(tc.Text)
		}
	}
	return res, text.String()
}

var toolArgs = map[string]map[string]any{
	"read-data":    {"key": "greeting"},
	"write-data":   {"key": "k", "value": "v"},
	"delete-data":  {"key": "nothing"},
	"manage-users": {"user": "bob", "role": "viewer"},
}

var toolNeeds = map[string]string{"read-data": "viewer", "write-data": "editor", "delete-data": "admin", "manage-users": "admin"}

func TestGuardEndToEnd(t *testing.T) {
	for _, form := range []struct {
		name             string
		middleware, wrap bool
	}{{"middleware", true, false}, {"wrapper", false, true}} {
		for _, mode := range mcptest.Modes {
			t.Run(form.name+"/"+mode.Name, func(t *testing.T) {
				f := newRBACFixture(t, mode, tutorialPolicy(), nil, form.middleware, form.wrap, nil)
				for _, role := range []string{"viewer", "editor", "admin"} {
					cs := f.connect(t, mode, role)
					if form.middleware {
						names, res := mcptest.ToolNames(t, cs)
						want := slices.Sorted(slices.Values(tutorialAllowed[role]))
						if !slices.Equal(names, want) {
							t.Errorf("%s: tools/list = %v, want %v", role, names, want)
						}
						if res.CacheScope != "private" {
							t.Errorf("%s: tools/list cacheScope = %q, want private", role, res.CacheScope)
						}
					}
					for _, tool := range tutorialTools {
						res, text := call(t, cs, tool, toolArgs[tool])
						allowed := slices.Contains(tutorialAllowed[role], tool)
						if res.IsError == allowed {
							t.Errorf("%s calling %s: IsError = %v (%q)", role, tool, res.IsError, text)
							continue
						}
						if !allowed && !strings.Contains(text, "requires role "+toolNeeds[tool]) {
							t.Errorf("%s calling %s: denial %q does not say what the tool requires", role, tool, text)
						}
						if !allowed && (strings.Contains(text, "viewer-user") || strings.Contains(text, "editor-user") || strings.Contains(text, "admin-user")) {
							t.Errorf("%s calling %s: denial %q names a principal", role, tool, text)
						}
					}
				}
				f.store.mu.Lock()
				defer f.store.mu.Unlock()
				if f.store.data["k"] != "v" || f.store.users["bob"] != "viewer" {
					t.Errorf("allowed calls did not run: %v %v", f.store.data, f.store.users)
				}
			})
		}
	}
}

func TestGuardDeniesUnknownToolAndUnauthenticated(t *testing.T) {
	g := mustGuard(t, tutorialPolicy())
	s := mcp.NewServer(&mcp.Implementation{Name: "rbac", Version: "1"}, nil)
	addTutorialTools(s, g, false)
	mcp.AddTool(s, &mcp.Tool{Name: "unlisted"}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, struct{}, error) {
		return nil, struct{}{}, nil
	})
	s.AddReceivingMiddleware(g.Middleware())
	// An in-memory session carries no principal: it is the case of a
	// server mounted without Require.
	ct, st := mcp.NewInMemoryTransports()
	ss, err := s.Connect(context.Background(), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "c", Version: "1"}, nil).Connect(context.Background(), ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	if names, _ := mcptest.ToolNames(t, cs); len(names) != 0 {
		t.Errorf("unauthenticated tools/list = %v", names)
	}
	for _, tool := range []string{"read-data", "unlisted"} {
		res, text := call(t, cs, tool, toolArgs[tool])
		if !res.IsError || !strings.Contains(text, "authentication required") {
			t.Errorf("unauthenticated call of %s: %v %q", tool, res.IsError, text)
		}
	}

	// An authenticated admin is still denied a tool no rule covers.
	mode := mcptest.Modes[0]
	k, _ := mcpauth.GenerateAPIKey()
	ak, _ := mcpauth.NewAPIKeys(mcpauth.APIKey{Key: k, Subject: "root", Roles: []string{"admin"}})
	srv := mcptest.Serve(t, mcpauth.Require(nil, ak)(mode.Handler(s)))
	cs2, err := mcptest.Connect(t, mode, srv.URL, mcptest.NewHeaders("X-API-Key", k))
	if err != nil {
		t.Fatal(err)
	}
	if names, _ := mcptest.ToolNames(t, cs2); slices.Contains(names, "unlisted") || len(names) != 4 {
		t.Errorf("admin tools/list = %v", names)
	}
	if res, text := call(t, cs2, "unlisted", nil); !res.IsError || !strings.Contains(text, "no rule allows this tool") {
		t.Errorf("admin calling a tool no rule covers: %v %q", res.IsError, text)
	}
}

// TestRoleDowngradeWithinSession: two keys of one subject, one admin, one
// viewer. Switching from the first to the second inside one session (the
// same go-sdk UserID, so the session is kept) must take effect at once,
// although the tool's ctx still belongs to the session's first request.
func TestRoleDowngradeWithinSession(t *testing.T) {
	mode := mcptest.Modes[0]
	if mode.Name != "2025-11-25" || mode.Stateless {
		t.Fatal("Modes[0] is not the stateful 2025-11-25 mode")
	}
	g := mustGuard(t, tutorialPolicy())
	s := mcp.NewServer(&mcp.Implementation{Name: "rbac", Version: "1"}, nil)
	addTutorialTools(s, g, false)
	s.AddReceivingMiddleware(g.Middleware())
	adminKey, _ := mcpauth.GenerateAPIKey()
	viewerKey, _ := mcpauth.GenerateAPIKey()
	ak, err := mcpauth.NewAPIKeys(
		mcpauth.APIKey{Key: adminKey, Subject: "alice", Roles: []string{"admin"}},
		mcpauth.APIKey{Key: viewerKey, Subject: "alice", Roles: []string{"viewer"}},
	)
	if err != nil {
		t.Fatal(err)
	}
	srv := mcptest.Serve(t, mcpauth.Require(nil, ak)(mode.Handler(s)))
	headers := mcptest.NewHeaders("X-API-Key", adminKey)
	cs, err := mcptest.Connect(t, mode, srv.URL, headers)
	if err != nil {
		t.Fatal(err)
	}
	if cs.ID() == "" {
		t.Fatal("no session")
	}
	if res, text := call(t, cs, "delete-data", toolArgs["delete-data"]); res.IsError {
		t.Fatalf("admin: %q", text)
	}
	headers.Set("X-API-Key", viewerKey)
	res, text := call(t, cs, "delete-data", toolArgs["delete-data"])
	if !res.IsError || !strings.Contains(text, "requires role admin") {
		t.Errorf("after the downgrade: IsError = %v, %q", res.IsError, text)
	}
	if names, _ := mcptest.ToolNames(t, cs); !slices.Equal(names, []string{"read-data"}) {
		t.Errorf("after the downgrade: tools/list = %v", names)
	}
	if res, text := call(t, cs, "read-data", toolArgs["read-data"]); res.IsError {
		t.Errorf("viewer read: %q", text)
	}
}

func TestGuardRateLimit(t *testing.T) {
	policy := tutorialPolicy()
	policy.Rules[0].RateLimit = "2/min"
	for _, form := range []struct {
		name             string
		middleware, wrap bool
	}{{"middleware", true, false}, {"wrapper", false, true}, {"both", true, true}} {
		t.Run(form.name, func(t *testing.T) {
			mode := mcptest.Modes[2]
			f := newRBACFixture(t, mode, policy, nil, form.middleware, form.wrap, nil)
			viewer := f.connect(t, mode, "viewer")
			// With both forms installed, a call is still counted once.
			for i := range 2 {
				if res, text := call(t, viewer, "read-data", toolArgs["read-data"]); res.IsError {
					t.Fatalf("call %d: %q", i+1, text)
				}
			}
			res, text := call(t, viewer, "read-data", toolArgs["read-data"])
			if !res.IsError || !strings.Contains(text, "rate limit exceeded") || !strings.Contains(text, "retry after 30s") {
				t.Errorf("third call: IsError = %v, %q", res.IsError, text)
			}
			// Another caller has its own bucket.
			editor := f.connect(t, mode, "editor")
			if res, text := call(t, editor, "read-data", toolArgs["read-data"]); res.IsError {
				t.Errorf("editor: %q", text)
			}
		})
	}
}

func TestGuardPromptsAndResources(t *testing.T) {
	policy := tutorialPolicy()
	policy.Rules = append(policy.Rules,
		mcpauth.Rule{Prompt: "greet", AnyCaller: true},
		mcpauth.Rule{Prompt: "audit-*", Roles: []string{"admin"}},
		mcpauth.Rule{Resource: "file:///public/*", Roles: []string{"viewer"}},
		mcpauth.Rule{Resource: "file:///private/*", Roles: []string{"admin"}},
	)
	g := mustGuard(t, policy)
	s := mcp.NewServer(&mcp.Implementation{Name: "rbac", Version: "1"}, &mcp.ServerOptions{
		CompletionHandler: func(context.Context, *mcp.CompleteRequest) (*mcp.CompleteResult, error) {
			return &mcp.CompleteResult{Completion: mcp.CompletionResultDetails{Values: []string{"x"}}}, nil
		},
	})
	addTutorialTools(s, g, false)
	for _, name := range []string{"greet", "audit-log"} {
		s.AddPrompt(&mcp.Prompt{Name: name}, func(context.Context, *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return &mcp.GetPromptResult{Messages: []*mcp.PromptMessage{{Role: "user", Content: &mcp.TextContent{Text: name}}}}, nil
		})
	}
	for _, uri := range []string{"file:///public/a", "file:///private/b"} {
		s.AddResource(&mcp.Resource{URI: uri, Name: uri}, func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, Text: "x"}}}, nil
		})
	}
	s.AddResourceTemplate(&mcp.ResourceTemplate{Name: "private", URITemplate: "file:///private/{name}"}, func(context.Context, *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		return nil, mcp.ResourceNotFoundError("")
	})
	if err := g.Validate(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	s.AddReceivingMiddleware(g.Middleware())
	for _, mode := range mcptest.Modes {
		t.Run(mode.Name, func(t *testing.T) {
			keys := map[string]string{}
			var list []mcpauth.APIKey
			for _, role := range []string{"viewer", "admin"} {
				keys[role], _ = mcpauth.GenerateAPIKey()
				list = append(list, mcpauth.APIKey{Key: keys[role], Subject: role, Roles: []string{role}})
			}
			ak, _ := mcpauth.NewAPIKeys(list...)
			srv := mcptest.Serve(t, mcpauth.Require(nil, ak)(mode.Handler(s)))
			ctx := context.Background()
			for role, want := range map[string]struct{ prompts, resources []string }{
				"viewer": {[]string{"greet"}, []string{"file:///public/a"}},
				"admin":  {[]string{"audit-log", "greet"}, []string{"file:///private/b", "file:///public/a"}},
			} {
				cs, err := mcptest.Connect(t, mode, srv.URL, mcptest.NewHeaders("X-API-Key", keys[role]))
				if err != nil {
					t.Fatal(err)
				}
				pl, err := cs.ListPrompts(ctx, nil)
				if err != nil {
					t.Fatal(err)
				}
				var prompts []string
				for _, p := range pl.Prompts {
					prompts = append(prompts, p.Name)
				}
				slices.Sort(prompts)
				rl, err := cs.ListResources(ctx, nil)
				if err != nil {
					t.Fatal(err)
				}
				var resources []string
				for _, r := range rl.Resources {
					resources = append(resources, r.URI)
				}
				slices.Sort(resources)
				if !slices.Equal(prompts, want.prompts) || !slices.Equal(resources, want.resources) {
					t.Errorf("%s: prompts %v resources %v, want %v %v", role, prompts, resources, want.prompts, want.resources)
				}
				if pl.CacheScope != "private" || rl.CacheScope != "private" {
					t.Errorf("%s: cacheScope %q %q", role, pl.CacheScope, rl.CacheScope)
				}
				_, err = cs.GetPrompt(ctx, &mcp.GetPromptParams{Name: "audit-log"})
				if (err == nil) != (role == "admin") || (err != nil && !strings.Contains(err.Error(), "requires role admin")) {
					t.Errorf("%s: prompts/get audit-log: %v", role, err)
				}
				tl, err := cs.ListResourceTemplates(ctx, nil)
				if err != nil || len(tl.ResourceTemplates) != map[string]int{"viewer": 0, "admin": 1}[role] {
					t.Errorf("%s: resources/templates/list: %v, %v", role, tl, err)
				}
				_, err = cs.Complete(ctx, &mcp.CompleteParams{Ref: &mcp.CompleteReference{Type: "ref/prompt", Name: "audit-log"}, Argument: mcp.CompleteParamsArgument{Name: "a"}})
				if (err == nil) != (role == "admin") {
					t.Errorf("%s: completion/complete of audit-log: %v", role, err)
				}
				if _, err := cs.Complete(ctx, &mcp.CompleteParams{Ref: &mcp.CompleteReference{Type: "ref/prompt", Name: "greet"}, Argument: mcp.CompleteParamsArgument{Name: "a"}}); err != nil {
					t.Errorf("%s: completion/complete of greet: %v", role, err)
				}
				_, err = cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: "file:///private/b"})
				if (err == nil) != (role == "admin") || (err != nil && !strings.Contains(err.Error(), "requires role admin")) {
					t.Errorf("%s: resources/read private: %v", role, err)
				}
				if rr, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: "file:///public/a"}); err != nil || rr.CacheScope != "private" {
					t.Errorf("%s: resources/read public: %v, %v", role, rr, err)
				}
			}
		})
	}
}

func TestGuardValidate(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	policy := tutorialPolicy()
	policy.Rules = append(policy.Rules,
		mcpauth.Rule{Tool: "ghost-tool", Roles: []string{"admin"}},
		mcpauth.Rule{Tool: "reports.*", Roles: []string{"viewer"}},
	)
	g, err := mcpauth.NewGuard(policy, &mcpauth.GuardOptions{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	s := mcp.NewServer(&mcp.Implementation{Name: "rbac", Version: "1"}, nil)
	addTutorialTools(s, g, false)
	mcp.AddTool(s, &mcp.Tool{Name: "export"}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, struct{}, error) {
		return nil, struct{}{}, nil
	})
	// Installed before Validate on purpose: Validate's own session must see
	// every tool.
	s.AddReceivingMiddleware(g.Middleware())
	err = g.Validate(context.Background(), s)
	if err == nil || !strings.Contains(err.Error(), `rule 5: the server has no tool "ghost-tool"`) {
		t.Errorf("Validate = %v", err)
	}
	for _, tool := range tutorialTools {
		if err != nil && strings.Contains(err.Error(), tool) {
			t.Errorf("Validate reports %s, which the server has: %v", tool, err)
		}
	}
	for _, want := range []string{`no rule covers tool \"export\"`, `tool pattern \"reports.*\" matches nothing`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("warnings %q lack %q", logs.String(), want)
		}
	}
}

func TestGuardAudit(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	mode := mcptest.Modes[1]
	f := newRBACFixture(t, mode, tutorialPolicy(), &mcpauth.GuardOptions{Logger: logger}, true, false, nil)
	cs := f.connect(t, mode, "viewer")
	call(t, cs, "read-data", toolArgs["read-data"])
	call(t, cs, "delete-data", toolArgs["delete-data"])
	out := logs.String()
	for _, want := range []string{
		`"msg":"mcpauth: access denied","kind":"authorization","outcome":"denied","reason":"role","layer":"mcp","tool":"delete-data","method":"apikey","subject":"viewer-user","key_id":"` + mcpauth.APIKeyID(f.keys["viewer"]) + `"`,
		`"msg":"mcpauth: access allowed","kind":"authorization","outcome":"success","layer":"mcp","tool":"read-data"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("audit log lacks %s:\n%s", want, out)
		}
	}
	for _, k := range f.keys {
		if strings.Contains(out, k) {
			t.Error("audit log holds an API key")
		}
	}
}

// TestGuardManyPrincipals runs many principals at once, each with its own
// key, role and rate limit bucket; run with -race.
func TestGuardManyPrincipals(t *testing.T) {
	policy := tutorialPolicy()
	policy.Rules[1].RateLimit = "3/min"
	const n = 24
	roles := []string{"viewer", "editor", "admin"}
	keys := make([]string, n)
	var list []mcpauth.APIKey
	for i := range keys {
		keys[i], _ = mcpauth.GenerateAPIKey()
		list = append(list, mcpauth.APIKey{Key: keys[i], Subject: fmt.Sprintf("p%d", i), Roles: []string{roles[i%3]}})
	}
	ak, err := mcpauth.NewAPIKeys(list...)
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range mcptest.Modes {
		t.Run(mode.Name, func(t *testing.T) {
			g := mustGuard(t, policy)
			s := mcp.NewServer(&mcp.Implementation{Name: "rbac", Version: "1"}, nil)
			addTutorialTools(s, g, false)
			s.AddReceivingMiddleware(g.Middleware())
			srv := mcptest.Serve(t, mcpauth.Require(nil, ak)(mode.Handler(s)))
			var wg sync.WaitGroup
			errs := make(chan error, n*20)
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					role := roles[i%3]
					cs, err := mcptest.Connect(t, mode, srv.URL, mcptest.NewHeaders("X-API-Key", keys[i]))
					if err != nil {
						errs <- err
						return
					}
					ctx := context.Background()
					lt, err := cs.ListTools(ctx, nil)
					if err != nil || len(lt.Tools) != len(tutorialAllowed[role]) {
						errs <- fmt.Errorf("p%d (%s): tools/list %v %v", i, role, lt, err)
						return
					}
					writes := 0
					for range 5 {
						for _, tool := range []string{"read-data", "write-data", "delete-data"} {
							res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: toolArgs[tool]})
							if err != nil {
								errs <- err
								return
							}
							if tool == "write-data" && !res.IsError {
								writes++
							}
							if tool != "write-data" && res.IsError == slices.Contains(tutorialAllowed[role], tool) {
								errs <- fmt.Errorf("p%d (%s) calling %s: IsError = %v", i, role, tool, res.IsError)
							}
						}
					}
					// Each principal has its own 3/min bucket for write-data.
					if role != "viewer" && writes != 3 {
						errs <- fmt.Errorf("p%d (%s): %d writes allowed, limit 3/min", i, role, writes)
					}
					if role == "viewer" && writes != 0 {
						errs <- fmt.Errorf("p%d (viewer): %d writes allowed", i, writes)
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}
