package mcpauth_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/mcpauth/mcpauth"
	"github.com/mcpauth/mcpauth/internal/mcptest"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// budget is a shared RateLimiter for the tests: each key gets Burst
// requests, and never more (its rate is too slow to matter in a test).
type budget struct {
	mu    sync.Mutex
	used  map[string]int
	down  bool
	calls int
}

func (b *budget) Allow(_ context.Context, key string, l mcpauth.Limit) (mcpauth.RateDecision, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls++
	if b.down {
		return mcpauth.RateDecision{}, errors.New("limiter down")
	}
	if b.used == nil {
		b.used = map[string]int{}
	}
	if b.used[key] >= l.Burst {
		return mcpauth.RateDecision{RetryAfter: 30_000_000_000}, nil
	}
	b.used[key]++
	return mcpauth.RateDecision{Allowed: true, Remaining: l.Burst - b.used[key]}, nil
}

// TestGuardSharedRateLimiter runs two guards (two replicas) on one
// RateLimiter: a rule's budget is spent across both, and a limiter that
// cannot answer refuses the call.
func TestGuardSharedRateLimiter(t *testing.T) {
	for _, mode := range mcptest.Modes {
		t.Run(mode.Name, func(t *testing.T) {
			b := &budget{}
			policy := &mcpauth.Policy{
				Roles: map[string][]string{"admin": {"editor"}, "editor": {"viewer"}, "viewer": nil},
				Rules: []mcpauth.Rule{{Tool: "*", Roles: []string{"viewer"}, RateLimit: "2/min"}},
			}
			var sessions []*mcp.ClientSession
			for range 2 {
				f := newRBACFixture(t, mode, policy, &mcpauth.GuardOptions{RateLimiter: b}, true, false, nil)
				sessions = append(sessions, f.connect(t, mode, "viewer"))
			}
			for i, limited := range []bool{false, false, true, true} {
				res, text := call(t, sessions[i%2], "read-data", toolArgs["read-data"])
				if got := res.IsError && strings.Contains(text, "rate limit exceeded"); got != limited {
					t.Fatalf("call %d: %q, want limited %v", i+1, text, limited)
				}
			}
			b.mu.Lock()
			b.down, b.used = true, nil
			b.mu.Unlock()
			if res, text := call(t, sessions[0], "read-data", toolArgs["read-data"]); !res.IsError || strings.Contains(text, "greeting") {
				t.Fatalf("limiter down: %q, want the call refused", text)
			}
		})
	}
}
