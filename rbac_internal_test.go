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
	g.events = LogEvents(slog.New(slog.DiscardHandler))
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

// TestAbnormalURIForms is the table of resource URI forms the guard accepts
// and refuses, beyond what the end-to-end tests read through a handler: the
// IPv4 forms inet_aton and WHATWG URL read, custom schemes, and the
// allocation-free accepted path.
func TestAbnormalURIForms(t *testing.T) {
	for _, tc := range []struct {
		uri      string
		abnormal bool
	}{
		{"https://intranet.example/x", false},
		{"https://intranet.example/", false},
		{"https://intranet.example:8443/x?q=1#f", false},
		{"http://docs.example:8080/a@b/c", false},
		{"https://10.0.0.5/x", false},
		{"https://10.0.0.5:8443/x", false},
		{"https://[2001:db8::1]/x", false},
		{"https://[2001:db8::1]:8443/x", false},
		{"https://[::1]/x", false},
		{"https://xn--9ca.example/x", false},
		{"https://my_host.example/x", false},
		{"https://intranet.example/my%20file", false},
		{"https://intranet.example/%C3%A9t%C3%A9", false},
		{"ticket://4521/comments", false}, // a custom scheme's name, not an IPv4 address
		{"ticket://4521", false},          // no "/" implied for a custom scheme
		{"db://users/1", false},
		{"mem:///x", false},
		{"urn:isbn:0451450523", false},
		{"file:///public/a", false},

		{"HTTPS://intranet.example/x", true},
		{"h ttps://intranet.example/x", true},
		{" https://intranet.example/x", true},
		{"1https://intranet.example/x", true},
		{"https://INTRANET.EXAMPLE/x", true},
		{"https://XN--9ca.example/x", true},
		{"https://intranet.example:443/x", true},
		{"http://intranet.example:80/x", true},
		{"wss://intranet.example:443/x", true},
		{"ws://intranet.example:80/x", true},
		{"ftp://intranet.example:21/x", true},
		{"https://intranet.example:/x", true},
		{"https://intranet.example:0443/x", true},
		{"https://intranet.example:8443x/x", true},
		{"https://intranet.example:8443:1/x", true},
		{"https://u@intranet.example/x", true},
		{"https://u:p@intranet.example/x", true},
		{"ticket://u@4521/", true},
		{"https://intranet.example./x", true},
		{"https://.intranet.example/x", true},
		{"https://intranet..example/x", true},
		{"https://intranet.example", true},
		{"https://intranet.example?x", true},
		{"https://intranet.example#x", true},
		{"https://intr%61net.example/x", true},
		{"https://%EF%BD%89ntranet.example/x", true},
		{"https://ｉntranet.example/x", true},
		{"https://intranet.example%2F@evil/x", true},
		{"https://intra net.example/x", true},
		{"https://intra\tnet.example/x", true},
		{"https://intranet.example/x\ny", true},
		{"https://intranet.example/x\x7f", true},
		{`https://intranet.example\x`, true},
		{`https:\\intranet.example\x`, true},
		{"https://010.0.0.5/x", true},
		{"https://10.0.0.05/x", true},
		{"https://0x0a.0.0.5/x", true},
		{"https://10.0.0.0x5/x", true},
		{"https://167772165/x", true},
		{"https://10.5/x", true},
		{"https://10.0.0.5.6/x", true},
		{"https://10.0.0.256/x", true},
		{"https://foo.123/x", true},
		{"https://[2001:DB8::1]/x", true},
		{"https://[2001:db8:0:0:0:0:0:1]/x", true},
		{"https://[2001:0db8::1]/x", true},
		{"https://[2001:db8::1%25eth0]/x", true},
		{"https://[::ffff:10.0.0.5]/x", true},
		{"https://[::ffff:a00:5]/x", true},
		{"https://[10.0.0.5]/x", true},
		{"https://[v1.x]/x", true},
		{"https://[2001:db8::1/x", true},
		{"https://[2001:db8::1]x/x", true},
		{"https://[2001:db8::1]:443/x", true},
		{"https://[2001:db8::1]:/x", true},
		{"https://intranet.example/a%2fb", true},
		{"https://intranet.example/%c3%a9t%c3%a9", true},
		{"https://intranet.example/my%2a", true},
		{"https://intranet.example/my%2A", false},
		{"https://intranet.example/a/../b", true},
	} {
		if got := abnormalURI(tc.uri); got != tc.abnormal {
			t.Errorf("abnormalURI(%q) = %v, want %v", tc.uri, got, tc.abnormal)
		}
		if !tc.abnormal {
			if n := testing.AllocsPerRun(10, func() { abnormalURI(tc.uri) }); n != 0 {
				t.Errorf("abnormalURI(%q) allocates %v times", tc.uri, n)
			}
		}
	}
}
