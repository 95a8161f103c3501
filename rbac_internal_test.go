package mcpauth

import (
	"fmt"
	"log/slog"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestListFilterAgreesWithDecide checks that the list filter's shortcut
// (roles looked up once per list) decides every case exactly as the call
// path does.
func TestListFilterAgreesWithDecide(t *testing.T) {
	policy := &Policy{
		Roles: map[string][]string{"admin": {"editor", "auditor"}, "editor": {"viewer"}, "viewer": nil, "auditor": nil},
		Rules: []Rule{
			{Tool: "*", Roles: []string{"admin"}},
			{Tool: "read", Roles: []string{"viewer"}},
			{Tool: "write", Roles: []string{"editor"}, Scopes: []string{"tools:write"}},
			{Tool: "audit.*", Roles: []string{"auditor"}},
			{Tool: "audit.purge", Roles: []string{"admin"}, Scopes: []string{"tools:admin"}},
			{Tool: "open", AnyCaller: true},
			{Tool: "scoped", Scopes: []string{"tools:execute"}},
		},
	}
	// 70 more roles, so that the role set spans two words.
	for i := range 70 {
		name := fmt.Sprintf("extra%02d", i)
		policy.Roles[name] = []string{"viewer"}
		policy.Rules = append(policy.Rules, Rule{Tool: "x." + name, Roles: []string{name}})
	}
	c, err := compilePolicy(policy)
	if err != nil {
		t.Fatal(err)
	}
	roleSets := [][]string{nil, {"viewer"}, {"editor"}, {"admin"}, {"auditor"}, {"ghost"}, {"ghost", "editor"}, {"extra69"}, {"extra03", "auditor"}}
	scopeSets := [][]string{nil, {"tools:write"}, {"tools:admin", "tools:write"}, {"tools:execute"}}
	tools := []string{"read", "write", "audit.log", "audit.purge", "open", "scoped", "other", "x.extra69", "x.extra03", "x.extra70"}
	principals := []*Principal{nil}
	for _, roles := range roleSets {
		for _, scopes := range scopeSets {
			principals = append(principals, &Principal{Subject: "s", Roles: roles, Scopes: scopes})
		}
	}
	allowed := 0
	for _, p := range principals {
		held := c.held(p)
		for _, tool := range tools {
			_, err := c.decide(p, kindTool, tool)
			if got := c.allows(p, held, kindTool, tool); got != (err == nil) {
				t.Errorf("%+v calling %s: allows = %v, decide = %v", p, tool, got, err)
			}
			if err == nil {
				allowed++
			}
		}
	}
	if allowed == 0 || allowed == len(principals)*len(tools) {
		t.Errorf("%d of %d allowed: the table does not exercise both outcomes", allowed, len(principals)*len(tools))
	}
}

// TestGuardRateLimitMemoryBounded: distinct principals, each calling a
// rate-limited tool once, never grow the guard's limiters past the cap.
func TestGuardRateLimitMemoryBounded(t *testing.T) {
	g, err := NewGuard(&Policy{Rules: []Rule{{Tool: "t", AnyCaller: true, RateLimit: "100/min"}}}, &GuardOptions{MaxRateLimiters: 4096})
	if err != nil {
		t.Fatal(err)
	}
	n := 200_000
	if testing.Short() {
		n = 20_000
	}
	g.logger = slog.New(slog.DiscardHandler)
	ctx := t.Context()
	for i := range n {
		p := (&Principal{Subject: fmt.Sprintf("p%d", i), Method: MethodJWT}).seal()
		req := &mcp.CallToolRequest{Params: &mcp.CallToolParamsRaw{Name: "t"}, Extra: &mcp.RequestExtra{TokenInfo: p.tokenInfo()}}
		if err := g.authorize(ctx, req, kindTool, "t"); err != nil {
			t.Fatalf("principal %d: %v", i, err)
		}
		if i%10_000 == 0 && g.limiters.Len() > 4096 {
			t.Fatalf("%d limiters after %d principals", g.limiters.Len(), i+1)
		}
	}
	if got := g.limiters.Len(); got > g.limiters.Cap() || g.limiters.Cap() > 4096 {
		t.Errorf("%d limiters held, cap %d", got, g.limiters.Cap())
	}
}
