package mcpauth

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"testing"

	"github.com/mcpauth/mcpauth/internal/mcptest"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

var discardLogger = slog.New(slog.DiscardHandler)

// benchPolicy has n tools and 10 roles in a chain (r0 inherits r1, ... r9):
// tool i requires role r(i%10); with limit, each rule has a rate limit too
// high to be reached.
func benchPolicy(n int, limit bool) *Policy {
	p := &Policy{Roles: map[string][]string{"r9": nil}}
	for i := range 9 {
		p.Roles[fmt.Sprintf("r%d", i)] = []string{fmt.Sprintf("r%d", i+1)}
	}
	for i := range n {
		r := Rule{Tool: fmt.Sprintf("tool-%04d", i), Roles: []string{fmt.Sprintf("r%d", i%10)}}
		if limit {
			r.RateLimit = "1000000000/s"
		}
		p.Rules = append(p.Rules, r)
	}
	return p
}

// benchPrincipal holds two roles, one unknown to the policy, as an
// identity provider's token often does.
func benchPrincipal() *Principal {
	return (&Principal{Subject: "bench", Method: MethodJWT, Issuer: "https://idp.example.com",
		Roles: []string{"offline_access", "r5"}, Scopes: []string{"openid"}}).seal()
}

func benchCall(p *Principal, tool string) *mcp.CallToolRequest {
	return &mcp.CallToolRequest{
		Params: &mcp.CallToolParamsRaw{Name: tool},
		Extra:  &mcp.RequestExtra{TokenInfo: p.tokenInfo()},
	}
}

// BenchmarkGuardCall measures one allowed tools/call through the guard's
// middleware, beside the same call to the handler alone.
func BenchmarkGuardCall(b *testing.B) {
	ok := &mcp.CallToolResult{}
	next := func(context.Context, string, mcp.Request) (mcp.Result, error) { return ok, nil }
	p := benchPrincipal()
	req := benchCall(p, "tool-0057") // requires r7, which r5 inherits
	ctx := context.Background()
	run := func(b *testing.B, h mcp.MethodHandler) {
		b.ReportAllocs()
		for b.Loop() {
			res, _ := h(ctx, "tools/call", req)
			if res.(*mcp.CallToolResult).IsError {
				b.Fatal("denied")
			}
		}
	}
	b.Run("baseline", func(b *testing.B) { run(b, next) })
	for _, limit := range []bool{false, true} {
		g, err := NewGuard(benchPolicy(100, limit), nil)
		if err != nil {
			b.Fatal(err)
		}
		name := "guarded"
		if limit {
			name = "guarded+ratelimit"
		}
		b.Run(name, func(b *testing.B) { run(b, g.Middleware()(next)) })
	}
	g, _ := NewGuard(benchPolicy(100, false), nil)
	b.Run("decide", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if g.Check(p, "tool-0057") != nil {
				b.Fatal("denied")
			}
		}
	})
	b.Run("denied", func(b *testing.B) {
		denied := benchCall(p, "tool-0052") // requires r2
		h := g.Middleware()(next)
		g.events = LogEvents(discardLogger)
		b.ReportAllocs()
		for b.Loop() {
			res, _ := h(ctx, "tools/call", denied)
			if !res.(*mcp.CallToolResult).IsError {
				b.Fatal("allowed")
			}
		}
	})
}

// BenchmarkGuardToolsList measures tools/list of 1,000 tools: the guard's
// filtering alone beside a handler that returns the list, and go-sdk's
// client listing over loopback HTTP from a server with and without the
// guard.
func BenchmarkGuardToolsList(b *testing.B) {
	const n = 1000
	g, err := NewGuard(benchPolicy(n, false), nil)
	if err != nil {
		b.Fatal(err)
	}
	p := benchPrincipal() // r5 has r5..r9: half the tools
	list := &mcp.ListToolsResult{}
	for i := range n {
		list.Tools = append(list.Tools, &mcp.Tool{Name: fmt.Sprintf("tool-%04d", i)})
	}
	next := func(context.Context, string, mcp.Request) (mcp.Result, error) { return list, nil }
	req := &mcp.ListToolsRequest{Params: &mcp.ListToolsParams{}, Extra: &mcp.RequestExtra{TokenInfo: p.tokenInfo()}}
	ctx := context.Background()
	run := func(b *testing.B, h mcp.MethodHandler, want int) {
		b.ReportAllocs()
		for b.Loop() {
			res, _ := h(ctx, "tools/list", req)
			if got := len(res.(*mcp.ListToolsResult).Tools); got != want {
				b.Fatalf("%d tools, want %d", got, want)
			}
		}
	}
	b.Run("filter/baseline", func(b *testing.B) { run(b, next, n) })
	b.Run("filter/guarded", func(b *testing.B) { run(b, g.Middleware()(next), n/2) })
	b.Run("filter/guarded-all", func(b *testing.B) {
		all := &mcp.ListToolsRequest{Params: &mcp.ListToolsParams{}, Extra: &mcp.RequestExtra{TokenInfo: (&Principal{Subject: "root", Method: MethodAPIKey, Roles: []string{"r0"}}).seal().tokenInfo()}}
		h := g.Middleware()(next)
		b.ReportAllocs()
		for b.Loop() {
			res, _ := h(ctx, "tools/list", all)
			if len(res.(*mcp.ListToolsResult).Tools) != n {
				b.Fatal("filtered")
			}
		}
	})

	key, err := GenerateAPIKey()
	if err != nil {
		b.Fatal(err)
	}
	allKey, err := GenerateAPIKey()
	if err != nil {
		b.Fatal(err)
	}
	keys, err := NewAPIKeys(APIKey{Key: key, Subject: "bench", Roles: []string{"r5"}}, APIKey{Key: allKey, Subject: "root", Roles: []string{"r0"}})
	if err != nil {
		b.Fatal(err)
	}
	mode := mcptest.Modes[2] // stateless: no session state between calls
	for _, c := range []struct {
		name    string
		guarded bool
		key     string
		want    int
	}{
		{"http/unguarded", false, key, n},
		{"http/guarded-all", true, allKey, n},   // the guard keeps all 1,000
		{"http/guarded-half", true, key, n / 2}, // the guard keeps 500
	} {
		s := mcp.NewServer(&mcp.Implementation{Name: "bench", Version: "1"}, nil)
		for i := range n {
			mcp.AddTool(s, &mcp.Tool{Name: fmt.Sprintf("tool-%04d", i), Description: "A tool of the benchmark."},
				func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, struct{}, error) {
					return nil, struct{}{}, nil
				})
		}
		if c.guarded {
			s.AddReceivingMiddleware(g.Middleware())
		}
		b.Run(c.name, func(b *testing.B) {
			// Served and connected per sub-benchmark, and closed at its end, so
			// that one's heap does not slow the next one's garbage collection.
			srv := mcptest.Serve(b, Require(&RequireOptions{Logger: discardLogger}, keys)(mode.Handler(s)))
			cs, err := mcptest.Connect(b, mode, srv.URL, mcptest.NewHeaders("X-API-Key", c.key))
			if err != nil {
				b.Fatal(err)
			}
			runtime.GC()
			b.ReportAllocs()
			for b.Loop() {
				res, err := cs.ListTools(ctx, nil)
				if err != nil || len(res.Tools) != c.want {
					b.Fatalf("%v, %v", res, err)
				}
			}
		})
	}
}

// BenchmarkGuardToolCallHTTP measures one tools/call from go-sdk's client
// over loopback HTTP, to a server of 100 tools with and without the guard:
// the guard's share of a real call.
func BenchmarkGuardToolCallHTTP(b *testing.B) {
	const n = 100
	g, err := NewGuard(benchPolicy(n, false), nil)
	if err != nil {
		b.Fatal(err)
	}
	key, err := GenerateAPIKey()
	if err != nil {
		b.Fatal(err)
	}
	keys, err := NewAPIKeys(APIKey{Key: key, Subject: "bench", Roles: []string{"r5"}})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	mode := mcptest.Modes[0] // a session: the usual steady state of a client
	for _, guarded := range []bool{false, true} {
		s := mcp.NewServer(&mcp.Implementation{Name: "bench", Version: "1"}, nil)
		for i := range n {
			mcp.AddTool(s, &mcp.Tool{Name: fmt.Sprintf("tool-%04d", i)},
				func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, struct{}, error) {
					return nil, struct{}{}, nil
				})
		}
		name := "http/unguarded"
		if guarded {
			s.AddReceivingMiddleware(g.Middleware())
			name = "http/guarded"
		}
		params := &mcp.CallToolParams{Name: "tool-0057", Arguments: map[string]any{}}
		b.Run(name, func(b *testing.B) {
			srv := mcptest.Serve(b, Require(&RequireOptions{Logger: discardLogger}, keys)(mode.Handler(s)))
			cs, err := mcptest.Connect(b, mode, srv.URL, mcptest.NewHeaders("X-API-Key", key))
			if err != nil {
				b.Fatal(err)
			}
			runtime.GC()
			b.ReportAllocs()
			for b.Loop() {
				res, err := cs.CallTool(ctx, params)
				if err != nil || res.IsError {
					b.Fatalf("%v, %v", res, err)
				}
			}
		})
	}
}

// BenchmarkGuardResourceRead measures one allowed resources/read through the
// guard's middleware, beside the handler alone: the URI form check, the
// lookup among prefix rules and the private copy of the result.
func BenchmarkGuardResourceRead(b *testing.B) {
	policy := benchPolicy(100, false)
	policy.Rules = append(policy.Rules,
		Rule{Resource: "https://intranet.example/*", Roles: []string{"r0"}},
		Rule{Resource: "https://*", Roles: []string{"r9"}},
		Rule{Resource: "file:///private/*", Roles: []string{"r0"}},
		Rule{Resource: "file:///public/*", Roles: []string{"r9"}},
	)
	g, err := NewGuard(policy, nil)
	if err != nil {
		b.Fatal(err)
	}
	ok := &mcp.ReadResourceResult{}
	next := func(context.Context, string, mcp.Request) (mcp.Result, error) { return ok, nil }
	p := benchPrincipal()
	ctx := context.Background()
	for _, uri := range []string{"file:///public/docs/report%202026.txt", "https://docs.example.com:8443/a/b?q=1"} {
		req := &mcp.ReadResourceRequest{Params: &mcp.ReadResourceParams{URI: uri}, Extra: &mcp.RequestExtra{TokenInfo: p.tokenInfo()}}
		run := func(b *testing.B, h mcp.MethodHandler) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := h(ctx, "resources/read", req); err != nil {
					b.Fatal(err)
				}
			}
		}
		scheme, _, _ := strings.Cut(uri, ":")
		b.Run(scheme+"/baseline", func(b *testing.B) { run(b, next) })
		b.Run(scheme+"/guarded", func(b *testing.B) { run(b, g.Middleware()(next)) })
	}
}
