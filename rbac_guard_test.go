package mcpauth_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/netip"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode"

	"github.com/mcpauth/mcpauth"
	"github.com/mcpauth/mcpauth/internal/mcptest"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// This file holds the regression tests of the adversarial review of the
// guard: each test failed before the fix committed with it.

// serveWithRoles serves s in mode behind Require with one API key per role
// (subject role+"-user") and returns the URL and the keys by role.
func serveWithRoles(t *testing.T, mode mcptest.Mode, s *mcp.Server, roles ...string) (string, map[string]string) {
	t.Helper()
	keys := map[string]string{}
	var list []mcpauth.APIKey
	for _, role := range roles {
		k, err := mcpauth.GenerateAPIKey()
		if err != nil {
			t.Fatal(err)
		}
		keys[role] = k
		list = append(list, mcpauth.APIKey{Key: k, Subject: role + "-user", Roles: []string{role}})
	}
	ak, err := mcpauth.NewAPIKeys(list...)
	if err != nil {
		t.Fatal(err)
	}
	return mcptest.Serve(t, mcpauth.Require(nil, ak)(mode.Handler(s))).URL, keys
}

// TestGuardListCursorLeaksNoForbiddenName: go-sdk's nextCursor is the
// base64 of the last entry of the page, so a filtered page whose last entry
// the caller may not see must not hand on that cursor: it would name the
// forbidden entry. Every page's cursor and entries show only what the
// caller may use, and paging still reaches everything it may use.
func TestGuardListCursorLeaksNoForbiddenName(t *testing.T) {
	policy := &mcpauth.Policy{
		Roles: map[string][]string{"viewer": nil, "admin": {"viewer"}},
		Rules: []mcpauth.Rule{
			{Tool: "pub-*", Roles: []string{"viewer"}},
			{Tool: "secret-*", Roles: []string{"admin"}},
			{Prompt: "pub-*", Roles: []string{"viewer"}},
			{Prompt: "secret-*", Roles: []string{"admin"}},
			{Resource: "file:///pub-*", Roles: []string{"viewer"}},
			{Resource: "file:///secret-*", Roles: []string{"admin"}},
		},
	}
	// Sorted by name, as go-sdk pages them: with pages of 2, pages end on
	// secret-b, secret-d and secret-f (a run of two pages with nothing
	// the viewer may see), then pub-g.
	names := []string{"pub-a", "secret-b", "pub-c", "secret-d", "secret-e", "secret-f", "pub-g"}
	for _, mode := range mcptest.Modes {
		t.Run(mode.Name, func(t *testing.T) {
			g := mustGuard(t, policy)
			s := mcp.NewServer(&mcp.Implementation{Name: "rbac", Version: "1"}, &mcp.ServerOptions{PageSize: 2})
			for _, n := range names {
				mcp.AddTool(s, &mcp.Tool{Name: n}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
					return nil, nil, nil
				})
				s.AddPrompt(&mcp.Prompt{Name: n}, func(context.Context, *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
					return &mcp.GetPromptResult{}, nil
				})
				s.AddResource(&mcp.Resource{URI: "file:///" + n, Name: n}, func(context.Context, *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
					return &mcp.ReadResourceResult{}, nil
				})
			}
			s.AddReceivingMiddleware(g.Middleware())
			url, keys := serveWithRoles(t, mode, s, "viewer", "admin")
			ctx := context.Background()
			for _, tc := range []struct {
				role string
				want []string
			}{
				{"viewer", []string{"pub-a", "pub-c", "pub-g"}},
				{"admin", []string{"pub-a", "pub-c", "pub-g", "secret-b", "secret-d", "secret-e", "secret-f"}},
			} {
				cs, err := mcptest.Connect(t, mode, url, mcptest.NewHeaders("X-API-Key", keys[tc.role]))
				if err != nil {
					t.Fatal(err)
				}
				// forbidden reports a forbidden name that s reveals.
				forbidden := func(s string) string {
					if dec, err := base64.URLEncoding.DecodeString(s); err == nil {
						s += " " + string(dec)
					}
					for _, n := range names {
						if strings.Contains(n, "secret") && tc.role == "viewer" && strings.Contains(s, n) {
							return n
						}
					}
					return ""
				}
				lists := map[string]func(cursor string) ([]string, string, error){
					"tools": func(c string) ([]string, string, error) {
						res, err := cs.ListTools(ctx, &mcp.ListToolsParams{Cursor: c})
						if err != nil {
							return nil, "", err
						}
						var out []string
						for _, x := range res.Tools {
							out = append(out, x.Name)
						}
						return out, res.NextCursor, nil
					},
					"prompts": func(c string) ([]string, string, error) {
						res, err := cs.ListPrompts(ctx, &mcp.ListPromptsParams{Cursor: c})
						if err != nil {
							return nil, "", err
						}
						var out []string
						for _, x := range res.Prompts {
							out = append(out, x.Name)
						}
						return out, res.NextCursor, nil
					},
					"resources": func(c string) ([]string, string, error) {
						res, err := cs.ListResources(ctx, &mcp.ListResourcesParams{Cursor: c})
						if err != nil {
							return nil, "", err
						}
						var out []string
						for _, x := range res.Resources {
							out = append(out, strings.TrimPrefix(x.URI, "file:///"))
						}
						return out, res.NextCursor, nil
					},
				}
				for what, list := range lists {
					var got []string
					cursor := ""
					for page := 0; ; page++ {
						if page > len(names) {
							t.Fatalf("%s %s: no end to the pages", tc.role, what)
						}
						entries, next, err := list(cursor)
						if err != nil {
							t.Fatalf("%s %s page %d: %v", tc.role, what, page, err)
						}
						if n := forbidden(next); n != "" {
							t.Errorf("%s %s page %d: nextCursor %q names %s", tc.role, what, page, next, n)
						}
						got = append(got, entries...)
						if next == "" {
							break
						}
						cursor = next
					}
					if strings.Join(got, ",") != strings.Join(tc.want, ",") {
						t.Errorf("%s %s: paged through %v, want %v", tc.role, what, got, tc.want)
					}
				}
			}
		})
	}
}

// TestGuardSubscriptionsListenGuarded: under 2026-07-28 a client subscribes
// to a resource with subscriptions/listen (go-sdk's ClientSession.Subscribe
// sends it), not resources/subscribe; the guard must decide its URIs as it
// decides resources/subscribe.
func TestGuardSubscriptionsListenGuarded(t *testing.T) {
	policy := tutorialPolicy()
	policy.Rules = append(policy.Rules,
		mcpauth.Rule{Resource: "file:///public/*", Roles: []string{"viewer"}},
		mcpauth.Rule{Resource: "file:///private/*", Roles: []string{"admin"}},
	)
	for _, mode := range mcptest.Modes {
		t.Run(mode.Name, func(t *testing.T) {
			g := mustGuard(t, policy)
			subscribed := make(chan string, 10)
			s := mcp.NewServer(&mcp.Implementation{Name: "rbac", Version: "1"}, &mcp.ServerOptions{
				SubscribeHandler: func(_ context.Context, req *mcp.SubscribeRequest) error {
					subscribed <- req.Params.URI
					return nil
				},
				UnsubscribeHandler: func(context.Context, *mcp.UnsubscribeRequest) error { return nil },
			})
			addTutorialTools(s, g, false)
			for _, uri := range []string{"file:///public/a", "file:///private/b"} {
				s.AddResource(&mcp.Resource{URI: uri, Name: uri}, func(context.Context, *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
					return &mcp.ReadResourceResult{}, nil
				})
			}
			s.AddReceivingMiddleware(g.Middleware())
			url, keys := serveWithRoles(t, mode, s, "viewer", "admin")
			for _, tc := range []struct {
				role, uri string
				allowed   bool
			}{
				{"viewer", "file:///private/b", false},
				{"viewer", "file:///public/a", true},
				{"admin", "file:///private/b", true},
			} {
				cs, err := mcptest.Connect(t, mode, url, mcptest.NewHeaders("X-API-Key", keys[tc.role]))
				if err != nil {
					t.Fatal(err)
				}
				// Under 2026-07-28 an accepted Subscribe holds its stream
				// open until Unsubscribe.
				done := make(chan error, 1)
				go func() { done <- cs.Subscribe(context.Background(), &mcp.SubscribeParams{URI: tc.uri}) }()
				// Both channels can be ready at once: a legacy
				// resources/subscribe answers right after the handler runs,
				// and go-sdk's 2026-07-28 client reports any end of the
				// listen stream, refusal included, as nil. So the handler,
				// not Subscribe's result, says whether it subscribed.
				var got string
				select {
				case got = <-subscribed:
				case err := <-done:
					if err != nil && (tc.allowed || !strings.Contains(err.Error(), "requires role admin")) {
						t.Errorf("%s %s: Subscribe = %v", tc.role, tc.uri, err)
					}
					wait := 50 * time.Millisecond
					if tc.allowed && err == nil {
						wait = 5 * time.Second
					}
					select {
					case got = <-subscribed:
					case <-time.After(wait):
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("%s %s: neither subscribed nor refused", tc.role, tc.uri)
				}
				switch {
				case tc.allowed && got != tc.uri:
					t.Errorf("%s: subscribed to %q, want %s", tc.role, got, tc.uri)
				case !tc.allowed && got != "":
					t.Errorf("%s: subscribed to %s, want a refusal", tc.role, got)
				}
				cs.Unsubscribe(context.Background(), &mcp.UnsubscribeParams{URI: tc.uri})
			}
		})
	}
}

// TestGuardPolicyYAMLOneDocument: a YAML policy is one document. A second
// one used to be ignored without a word, and with it any rule it held: a
// narrower exact rule ignored leaves a broader prefix rule to allow what it
// was written to deny.
func TestGuardPolicyYAMLOneDocument(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		ok         bool
	}{
		{"one document", "roles: {user: []}\nrules:\n  - {tool: 'db.*', roles: [user]}\n", true},
		{"one document with start marker", "---\nroles: {user: []}\nrules:\n  - {tool: 'db.*', roles: [user]}\n", true},
		{"one document with end marker", "roles: {user: []}\nrules:\n  - {tool: 'db.*', roles: [user]}\n...\n", true},
		{"two documents", "roles: {user: [], admin: []}\nrules:\n  - {tool: 'db.*', roles: [user]}\n---\nrules:\n  - {tool: db.drop, roles: [admin]}\n", false},
		{"empty second document", "roles: {user: []}\nrules:\n  - {tool: 'db.*', roles: [user]}\n---\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := mcpauth.ParsePolicy([]byte(tc.text))
			if (err == nil) != tc.ok {
				t.Errorf("ParsePolicy: %v, want ok %v", err, tc.ok)
			}
		})
	}
}

// TestGuardResourceURIForms: a resource rule matches the URI as written,
// but a handler that parses it (url.Parse, then path.Clean or
// filepath.Join, as file servers do) reads what it denotes. A URI that
// denotes the same resource in another form (dot segments, plain or
// percent-encoded; percent-encoded letters; an upper-case scheme) could
// match a broader rule than the resource it reaches. The guard refuses URIs
// that are not in that sense normal.
func TestGuardResourceURIForms(t *testing.T) {
	policy := tutorialPolicy()
	policy.Rules = append(policy.Rules,
		mcpauth.Rule{Resource: "*", Roles: []string{"viewer"}},
		mcpauth.Rule{Resource: "file:///private/*", Roles: []string{"admin"}},
	)
	g := mustGuard(t, policy)
	s := mcp.NewServer(&mcp.Implementation{Name: "rbac", Version: "1"}, nil)
	addTutorialTools(s, g, false)
	// A file server: what it reads is the cleaned path of the parsed URI,
	// whatever its authority.
	s.AddResourceTemplate(&mcp.ResourceTemplate{Name: "files", URITemplate: "file:{+rest}"}, func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		u, err := url.Parse(req.Params.URI)
		if err != nil {
			return nil, err
		}
		text := "public"
		if strings.HasPrefix(path.Clean(u.Path), "/private/") {
			text = "secret"
		}
		return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, Text: text}}}, nil
	})
	s.AddReceivingMiddleware(g.Middleware())
	mode := mcptest.Modes[0]
	addr, keys := serveWithRoles(t, mode, s, "viewer", "admin")
	for _, tc := range []struct {
		role, uri string
		want      string // the text read, or "" for a refusal
	}{
		{"viewer", "file:///public/a", "public"},
		{"viewer", "file:///public/my%20file", "public"},
		{"viewer", "file:///public/a?x=../private/b", "public"},
		{"viewer", "file:///private/b", ""},
		{"admin", "file:///private/b", "secret"},
		{"viewer", "file:///public/../private/b", ""},
		{"viewer", "file:///./private/b", ""},
		{"viewer", "file:///public/%2e%2e/private/b", ""},
		{"viewer", "file:///public/%2E%2E/private/b", ""},
		{"viewer", "file:///public/..%2Fprivate%2Fb", ""},
		{"viewer", "file:///%70rivate/b", ""},
		{"viewer", "file:///public/..", ""},
		{"viewer", "file:////private/b", ""},
		{"viewer", "file:///public//../private/b", ""},
		{"viewer", "file:/private/b", ""},
		{"viewer", "file://localhost/private/b", ""},
		{"viewer", "file://host/private/b", ""},
	} {
		cs, err := mcptest.Connect(t, mode, addr, mcptest.NewHeaders("X-API-Key", keys[tc.role]))
		if err != nil {
			t.Fatal(err)
		}
		res, err := cs.ReadResource(context.Background(), &mcp.ReadResourceParams{URI: tc.uri})
		got := ""
		if err == nil && len(res.Contents) == 1 {
			got = res.Contents[0].Text
		}
		if got != tc.want {
			t.Errorf("%s reads %s: %q (%v), want %q", tc.role, tc.uri, got, err, tc.want)
		}
	}
}

// TestGuardPolicyJSONDuplicateKeys: encoding/json keeps the last of two
// equal keys without a word, so {"roles":["admin"],"roles":["user"]} opened
// a tool meant for admins to users; YAML already refused duplicate keys.
func TestGuardPolicyJSONDuplicateKeys(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		ok         bool
	}{
		{"distinct keys", `{"roles":{"user":[],"admin":[]},"rules":[{"tool":"x","roles":["admin"]},{"tool":"y","roles":["user"]}]}`, true},
		{"rule key twice", `{"roles":{"user":[],"admin":[]},"rules":[{"tool":"x","roles":["admin"],"roles":["user"]}]}`, false},
		{"role twice", `{"roles":{"admin":["user"],"user":[],"admin":[]},"rules":[{"tool":"x","roles":["admin"]}]}`, false},
		{"top-level key twice", `{"roles":{"user":[]},"rules":[{"tool":"x","roles":["user"]}],"rules":[]}`, false},
		{"nested after array", `{"roles":{"user":[]},"rules":[{"tool":"x","roles":["user"],"scopes":["a"],"tool":"y"}]}`, false},
		// encoding/json matches field names case-insensitively, with
		// Unicode folding: ROLES and roleſ (a long s) are roles too.
		{"key twice, other case", `{"roles":{"user":[],"admin":[]},"rules":[{"tool":"x","roles":["admin"],"ROLES":["user"]}]}`, false},
		{"key twice, folded", `{"roles":{"user":[],"admin":[]},"rules":[{"tool":"x","roles":["admin"],"roleſ":["user"]}]}`, false},
		{"top-level key twice, other case", `{"roles":{"user":[]},"rules":[{"tool":"x","roles":["user"]}],"Rules":[]}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := mcpauth.ParsePolicy([]byte(tc.text))
			if (err == nil) != tc.ok {
				t.Errorf("ParsePolicy: %v, want ok %v", err, tc.ok)
			}
		})
	}
}

// TestGuardPrefixRuleSharesOneBucket: a rate-limited prefix or "*" rule
// gives each caller one bucket for all the tools it covers, as the docs now
// say (they said one per tool). One per tool name would let a caller mint
// buckets with made-up names that match the pattern, and push its own real
// bucket out of the bounded limiter map, refilled.
func TestGuardPrefixRuleSharesOneBucket(t *testing.T) {
	policy := &mcpauth.Policy{
		Roles: map[string][]string{"admin": {"editor"}, "editor": {"viewer"}, "viewer": nil},
		Rules: []mcpauth.Rule{{Tool: "*", Roles: []string{"viewer"}, RateLimit: "2/min"}},
	}
	mode := mcptest.Modes[0]
	f := newRBACFixture(t, mode, policy, nil, true, false, nil)
	cs := f.connect(t, mode, "viewer")
	for i, tc := range []struct {
		tool    string
		limited bool
	}{{"read-data", false}, {"write-data", false}, {"delete-data", true}, {"read-data", true}} {
		res, text := call(t, cs, tc.tool, toolArgs[tc.tool])
		if limited := res.IsError && strings.Contains(text, "rate limit exceeded"); limited != tc.limited {
			t.Errorf("call %d (%s): %q, want limited %v", i+1, tc.tool, text, tc.limited)
		}
	}
}

// TestGuardScopeTokens: a rule's scopes go into the WWW-Authenticate
// challenge of RequireScopes, so each must be an RFC 6749 §3.3 scope-token
// (printable ASCII but space, '"' and '\'); control characters and
// non-ASCII were let through.
func TestGuardScopeTokens(t *testing.T) {
	for _, tc := range []struct {
		scope string
		ok    bool
	}{
		{"tools:write", true},
		{"https://api.example.com/read", true},
		{"a!#$%&'()*+,-./:;<=>?@[]^_`{|}~", true},
		{"a\x0bb", false},
		{"a\x00", false},
		{"a\x7f", false},
		{"tööls", false},
		{"a b", false},
		{`a"b`, false},
		{`a\b`, false},
		{"", false},
	} {
		_, err := mcpauth.NewGuard(&mcpauth.Policy{Rules: []mcpauth.Rule{{Tool: "t", Scopes: []string{tc.scope}}}}, nil)
		if (err == nil) != tc.ok {
			t.Errorf("scope %q: %v, want ok %v", tc.scope, err, tc.ok)
		}
	}
}

type searchParams struct {
	mcp.ParamsBase
	Query string `json:"query"`
}

type searchResult struct {
	mcp.ResultBase
	Hits []string `json:"hits"`
}

// TestGuardCustomMethodsDenied: a method the guard does not know (one added
// with mcp.AddReceivingCustomMethod, or one a later go-sdk adds, such as
// tasks, which may hand out tool results) passed the guard to every caller,
// and a custom method's handler is not given the request, so it cannot read
// the caller itself. The guard denies such methods unless
// GuardOptions.AllowMethods names them, and then only to authenticated
// callers.
func TestGuardCustomMethodsDenied(t *testing.T) {
	for _, mode := range mcptest.Modes {
		for _, tc := range []struct {
			name  string
			allow []string
			ok    bool
		}{
			{"not allowed", nil, false},
			{"allowed", []string{"acme/search"}, true},
		} {
			t.Run(mode.Name+"/"+tc.name, func(t *testing.T) {
				g, err := mcpauth.NewGuard(tutorialPolicy(), &mcpauth.GuardOptions{AllowMethods: tc.allow})
				if err != nil {
					t.Fatal(err)
				}
				s := mcp.NewServer(&mcp.Implementation{Name: "rbac", Version: "1"}, nil)
				addTutorialTools(s, g, false)
				if err := mcp.AddReceivingCustomMethod(s, "acme/search", func(context.Context, *mcp.ServerSession, *searchParams) (*searchResult, error) {
					return &searchResult{Hits: []string{"secret"}}, nil
				}); err != nil {
					t.Fatal(err)
				}
				s.AddReceivingMiddleware(g.Middleware())
				addr, keys := serveWithRoles(t, mode, s, "viewer")
				c := mcp.NewClient(&mcp.Implementation{Name: "review", Version: "1"}, nil)
				if err := mcp.AddSendingCustomMethod[*searchParams, *searchResult](c, "acme/search"); err != nil {
					t.Fatal(err)
				}
				headers := mcptest.NewHeaders("X-API-Key", keys["viewer"])
				cs, err := c.Connect(context.Background(), &mcp.StreamableClientTransport{
					Endpoint: addr, DisableStandaloneSSE: true, HTTPClient: &http.Client{Transport: headers.RoundTripper()},
				}, &mcp.ClientSessionOptions{ProtocolVersion: mode.ProtocolVersion})
				if err != nil {
					t.Fatal(err)
				}
				defer cs.Close()
				res, err := mcp.CallCustomMethod[*searchParams, *searchResult](context.Background(), cs, "acme/search", &searchParams{Query: "x"})
				if tc.ok != (err == nil) || !tc.ok && !strings.Contains(err.Error(), "access denied") {
					t.Errorf("acme/search: %v, %v; want ok %v", res, err, tc.ok)
				}
				// The standard methods still work.
				if names, _ := mcptest.ToolNames(t, cs); strings.Join(names, ",") != "read-data" {
					t.Errorf("tools/list: %v", names)
				}
			})
		}
	}
}

// TestGuardWrapperMarkIsPerTool: the middleware marks the context of a call
// it has allowed so that a wrapped handler behind it does not decide the call
// again. The mark used to say only "allowed", so a tool that dispatches to
// other wrapped handlers with its own context (a composite tool) ran them
// unchecked: a viewer's run-all reached delete-data. The mark now names
// the tool the middleware allowed.
func TestGuardWrapperMarkIsPerTool(t *testing.T) {
	policy := tutorialPolicy()
	policy.Rules = append(policy.Rules, mcpauth.Rule{Tool: "run", Roles: []string{"viewer"}})
	for _, mode := range mcptest.Modes {
		t.Run(mode.Name, func(t *testing.T) {
			g := mustGuard(t, policy)
			s := mcp.NewServer(&mcp.Implementation{Name: "rbac", Version: "1"}, nil)
			addTutorialTools(s, g, false)
			var deleted atomic.Int32
			del := mcpauth.GuardTool(g, func(context.Context, *mcp.CallToolRequest, keyIn) (*mcp.CallToolResult, result, error) {
				deleted.Add(1)
				return nil, result{OK: true}, nil
			})
			read := mcpauth.GuardTool(g, func(context.Context, *mcp.CallToolRequest, keyIn) (*mcp.CallToolResult, result, error) {
				return nil, result{OK: true}, nil
			})
			// run calls the named tool's handler in-process, as its caller.
			mcp.AddTool(s, &mcp.Tool{Name: "run"}, mcpauth.GuardTool(g, func(ctx context.Context, req *mcp.CallToolRequest, in keyIn) (*mcp.CallToolResult, result, error) {
				sub := &mcp.CallToolRequest{Session: req.Session, Extra: req.Extra, Params: &mcp.CallToolParamsRaw{Name: in.Key}}
				h := map[string]mcp.ToolHandlerFor[keyIn, result]{"delete-data": del, "read-data": read}[in.Key]
				_, out, err := h(ctx, sub, keyIn{})
				return nil, out, err
			}))
			s.AddReceivingMiddleware(g.Middleware())
			addr, keys := serveWithRoles(t, mode, s, "viewer", "admin")
			for _, tc := range []struct {
				role, tool string
				ok         bool
			}{
				{"viewer", "read-data", true},
				{"viewer", "delete-data", false},
				{"admin", "delete-data", true},
			} {
				cs, err := mcptest.Connect(t, mode, addr, mcptest.NewHeaders("X-API-Key", keys[tc.role]))
				if err != nil {
					t.Fatal(err)
				}
				res, text := call(t, cs, "run", map[string]any{"key": tc.tool})
				if res.IsError == tc.ok || !tc.ok && !strings.Contains(text, "requires role admin") {
					t.Errorf("%s runs %s: IsError %v %q, want ok %v", tc.role, tc.tool, res.IsError, text, tc.ok)
				}
			}
			if n := deleted.Load(); n != 1 {
				t.Errorf("delete-data ran %d times, want 1 (the admin's)", n)
			}
		})
	}
}

// hostDenoted is the host a resource handler that fetches an http(s) URI
// reaches: what url.Parse gives, case-folded, without a trailing dot, with
// full-width letters mapped as IDNA maps them, and an IP address in its
// one form (an IPv4-mapped IPv6 address is the IPv4 address it maps).
func hostDenoted(u *url.URL) string {
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	host = strings.Map(func(r rune) rune {
		if 'Ａ' <= r && r <= 'ｚ' {
			return unicode.ToLower(r - 'Ａ' + 'A')
		}
		return r
	}, host)
	if a, err := netip.ParseAddr(host); err == nil {
		host = a.WithZone("").Unmap().String()
	}
	return host
}

// TestGuardResourceURIHostForms: rules match a resource URI as written, but
// a handler that fetches an http(s) URI reaches its host however it is
// spelt: in upper case, with a trailing dot, with userinfo, with the
// scheme's default port or an empty one, percent-encoded, or as another
// text of the same IP address. With intranet.example admin-only and
// https://* open, a viewer read the admin-only resource through each of
// those forms; the guard now refuses them.
func TestGuardResourceURIHostForms(t *testing.T) {
	policy := tutorialPolicy()
	policy.Rules = append(policy.Rules,
		mcpauth.Rule{Resource: "https://*", Roles: []string{"viewer"}},
		mcpauth.Rule{Resource: "http://*", Roles: []string{"viewer"}},
		mcpauth.Rule{Resource: "https://intranet.example/*", Roles: []string{"admin"}},
		mcpauth.Rule{Resource: "http://intranet.example/*", Roles: []string{"admin"}},
		mcpauth.Rule{Resource: "https://10.0.0.5/*", Roles: []string{"admin"}},
		mcpauth.Rule{Resource: "https://[2001:db8::1]/*", Roles: []string{"admin"}},
	)
	g := mustGuard(t, policy)
	s := mcp.NewServer(&mcp.Implementation{Name: "rbac", Version: "1"}, nil)
	addTutorialTools(s, g, false)
	read := func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		u, err := url.Parse(req.Params.URI)
		if err != nil {
			return nil, err
		}
		text := "public"
		switch hostDenoted(u) {
		case "intranet.example", "10.0.0.5", "2001:db8::1":
			text = "secret"
		}
		return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, Text: text}}}, nil
	}
	s.AddResourceTemplate(&mcp.ResourceTemplate{Name: "https", URITemplate: "https:{+rest}"}, read)
	s.AddResourceTemplate(&mcp.ResourceTemplate{Name: "http", URITemplate: "http:{+rest}"}, read)
	s.AddReceivingMiddleware(g.Middleware())
	mode := mcptest.Modes[0]
	addr, keys := serveWithRoles(t, mode, s, "viewer", "admin")
	sessions := map[string]*mcp.ClientSession{}
	for _, role := range []string{"viewer", "admin"} {
		cs, err := mcptest.Connect(t, mode, addr, mcptest.NewHeaders("X-API-Key", keys[role]))
		if err != nil {
			t.Fatal(err)
		}
		sessions[role] = cs
	}
	for _, tc := range []struct {
		role, uri string
		want      string // the text read, or "" for a refusal
	}{
		// Normal forms.
		{"admin", "https://intranet.example/x", "secret"},
		{"admin", "http://intranet.example/x", "secret"},
		{"admin", "https://10.0.0.5/x", "secret"},
		{"admin", "https://[2001:db8::1]/x", "secret"},
		{"viewer", "https://intranet.example/x", ""},
		{"viewer", "https://docs.example/x", "public"},
		{"viewer", "https://docs.example/", "public"},
		{"viewer", "https://docs.example:8443/x", "public"},
		{"viewer", "http://docs.example:8080/x?q=A@B", "public"},
		{"viewer", "https://docs.example/a@b/x", "public"},
		{"viewer", "https://10.0.0.6/x", "public"},
		{"viewer", "https://[2001:db8::2]/x", "public"},
		{"viewer", "https://xn--9ca.example/x", "public"},
		// Other spellings of an admin-only host.
		{"viewer", "https://INTRANET.example/x", ""},
		{"viewer", "https://Intranet.Example/x", ""},
		{"viewer", "https://intranet.example:443/x", ""},
		{"viewer", "http://intranet.example:80/x", ""},
		{"viewer", "https://intranet.example:/x", ""},
		{"viewer", "https://intranet.example:0443/x", ""},
		{"viewer", "https://anyone@intranet.example/x", ""},
		{"viewer", "https://anyone:pw@intranet.example/x", ""},
		{"viewer", "https://@intranet.example/x", ""},
		{"viewer", "https://intranet.example./x", ""},
		{"viewer", "https://intranet.example", ""},
		{"viewer", "https://intranet.example?x=1", ""},
		{"viewer", "https://%EF%BD%89ntranet.example/x", ""},
		{"viewer", "https://ｉｎｔｒａｎｅｔ.example/x", ""},
		{"viewer", "https://[2001:DB8::1]/x", ""},
		{"viewer", "https://[2001:db8:0:0:0:0:0:1]/x", ""},
		{"viewer", "https://[2001:0db8::1]/x", ""},
		{"viewer", "https://[2001:db8::1%25eth0]/x", ""},
		{"viewer", "https://[::ffff:10.0.0.5]/x", ""},
		{"viewer", "https://[::FFFF:a00:5]/x", ""},
		{"viewer", `https://intranet.example\x`, ""},
	} {
		res, err := sessions[tc.role].ReadResource(context.Background(), &mcp.ReadResourceParams{URI: tc.uri})
		got := ""
		if err == nil && len(res.Contents) == 1 {
			got = res.Contents[0].Text
		}
		if got != tc.want {
			t.Errorf("%s reads %s: %q (%v), want %q", tc.role, tc.uri, got, err, tc.want)
		}
		if tc.want == "" && tc.role == "viewer" && tc.uri != "https://intranet.example/x" && (err == nil || !strings.Contains(err.Error(), "not in normal form")) {
			t.Errorf("%s reads %s: %v, want a uri_form refusal", tc.role, tc.uri, err)
		}
	}
}

// TestGuardRateLimitNotResetByOwnBuckets: the limiter map was sharded by
// caller alone, with MaxRateLimiters/32 buckets a shard, so a caller that
// called more rate-limited tools than that pushed its own exhausted bucket
// out, and it came back full: with MaxRateLimiters 64, a 1/h tool could be
// called again after every two other tools. Now a caller's buckets take room
// from the whole map, and the 1/h tool stays spent.
func TestGuardRateLimitNotResetByOwnBuckets(t *testing.T) {
	const others = 60
	policy := &mcpauth.Policy{
		Roles: map[string][]string{"viewer": nil},
		Rules: []mcpauth.Rule{{Tool: "once", Roles: []string{"viewer"}, RateLimit: "1/h"}},
	}
	s := mcp.NewServer(&mcp.Implementation{Name: "rbac", Version: "1"}, nil)
	for i := range others + 1 {
		name := "once"
		if i > 0 {
			name = "tool-" + strconv.Itoa(i)
			policy.Rules = append(policy.Rules, mcpauth.Rule{Tool: name, Roles: []string{"viewer"}, RateLimit: "100/h"})
		}
		mcp.AddTool(s, &mcp.Tool{Name: name}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, struct{}, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "done"}}}, struct{}{}, nil
		})
	}
	g, err := mcpauth.NewGuard(policy, &mcpauth.GuardOptions{MaxRateLimiters: 64})
	if err != nil {
		t.Fatal(err)
	}
	s.AddReceivingMiddleware(g.Middleware())
	mode := mcptest.Modes[0]
	addr, keys := serveWithRoles(t, mode, s, "viewer")
	cs, err := mcptest.Connect(t, mode, addr, mcptest.NewHeaders("X-API-Key", keys["viewer"]))
	if err != nil {
		t.Fatal(err)
	}
	if res, text := call(t, cs, "once", nil); res.IsError {
		t.Fatalf("first call of once: %q", text)
	}
	for round := range 3 {
		for i := 1; i <= others; i++ {
			if res, text := call(t, cs, "tool-"+strconv.Itoa(i), nil); res.IsError {
				t.Fatalf("round %d, tool-%d: %q", round+1, i, text)
			}
		}
		if res, text := call(t, cs, "once", nil); !res.IsError || !strings.Contains(text, "rate limit exceeded") {
			t.Fatalf("round %d: once called a second time within the hour: %q", round+1, text)
		}
	}
}

// TestGuardMaxRateLimitersCoversRules: with fewer rate limiters than
// rate-limited rules, one caller calling every limited tool fills the map
// and pushes out its own exhausted buckets. NewGuard refuses that setting.
func TestGuardMaxRateLimitersCoversRules(t *testing.T) {
	policy := &mcpauth.Policy{Roles: map[string][]string{"viewer": nil}}
	for i := range 10 {
		policy.Rules = append(policy.Rules, mcpauth.Rule{Tool: "tool-" + strconv.Itoa(i), Roles: []string{"viewer"}, RateLimit: "1/h"})
	}
	policy.Rules = append(policy.Rules, mcpauth.Rule{Tool: "free", Roles: []string{"viewer"}})
	for _, tc := range []struct {
		max int
		ok  bool
	}{{0, true}, {10, true}, {64, true}, {9, false}, {1, false}} {
		_, err := mcpauth.NewGuard(policy, &mcpauth.GuardOptions{MaxRateLimiters: tc.max})
		if (err == nil) != tc.ok {
			t.Errorf("MaxRateLimiters %d: %v, want ok %v", tc.max, err, tc.ok)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "mcpauth: ") {
			t.Errorf("MaxRateLimiters %d: %q does not start with mcpauth:", tc.max, err)
		}
	}
}
