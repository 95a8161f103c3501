package redis

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpauth/mcpauth"
	"github.com/mcpauth/mcpauth/internal/testredis"
)

// TestAllowSharedBudget runs many goroutines on two stores (two replicas)
// of one Redis against one key: exactly the burst is allowed, whatever the
// interleaving, and other keys are not touched.
func TestAllowSharedBudget(t *testing.T) {
	srv := testredis.Start(t)
	a := newTestStore(t, srv, Options{Prefix: "rl:"})
	b := newTestStore(t, srv, Options{Prefix: "rl:"})
	tests := []struct {
		name  string
		limit mcpauth.Limit
		want  int
	}{
		{"burst 10", mcpauth.Limit{Rate: 0.001, Burst: 10}, 10},
		{"burst 0 means 1", mcpauth.Limit{Rate: 0.001}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var allowed atomic.Int64
			var wg sync.WaitGroup
			for g := range 40 {
				st := a
				if g%2 == 1 {
					st = b
				}
				wg.Go(func() {
					for range 10 {
						d, err := st.Allow(context.Background(), "principal:"+tt.name, tt.limit)
						if err != nil {
							t.Error(err)
							return
						}
						if d.Allowed {
							allowed.Add(1)
						} else if d.RetryAfter <= 0 || d.Remaining != 0 {
							t.Errorf("refused with %+v", d)
						}
					}
				})
			}
			wg.Wait()
			if n := allowed.Load(); n != int64(tt.want) {
				t.Fatalf("%d allowed, want %d", n, tt.want)
			}
			d, err := a.Allow(context.Background(), "principal:other "+tt.name, tt.limit)
			if err != nil || !d.Allowed || d.Remaining != tt.want-1 {
				t.Fatalf("another key: %+v, %v", d, err)
			}
		})
	}
	if _, err := a.Allow(context.Background(), "k", mcpauth.Limit{Burst: 1}); err == nil {
		t.Fatal("a limit without a rate: no error")
	}
}

// TestAllowRefills checks the rate: at 50 per second a refused key fits
// again within the RetryAfter it was told (waiting on it, boundedly).
func TestAllowRefills(t *testing.T) {
	srv := testredis.Start(t)
	s := newTestStore(t, srv, Options{})
	limit := mcpauth.Limit{Rate: 50, Burst: 2}
	ctx := context.Background()
	for range 2 {
		if d, err := s.Allow(ctx, "k", limit); err != nil || !d.Allowed {
			t.Fatalf("%+v %v", d, err)
		}
	}
	d, err := s.Allow(ctx, "k", limit)
	if err != nil || d.Allowed || d.RetryAfter <= 0 || d.RetryAfter > 20*time.Millisecond {
		t.Fatalf("third: %+v %v, want refused with RetryAfter within 20ms", d, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		time.Sleep(d.RetryAfter)
		if d, err = s.Allow(ctx, "k", limit); err != nil {
			t.Fatal(err)
		}
		if d.Allowed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("never refilled")
		}
	}
}

// TestRequireOnRedis runs two Require middlewares (two replicas) on one
// Redis: they share the principal's rate limit, and a lockout started on
// one refuses the address on the other.
func TestRequireOnRedis(t *testing.T) {
	srv := testredis.Start(t)
	st := newTestStore(t, srv, Options{})
	key, err := mcpauth.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	var replicas []http.Handler
	for range 2 {
		keys, err := mcpauth.NewAPIKeys(mcpauth.APIKey{Key: key, Subject: "alice"})
		if err != nil {
			t.Fatal(err)
		}
		lo, err := mcpauth.NewLockout(&mcpauth.LockoutOptions{SourceFailures: 10, Store: st, SyncInterval: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = lo.Close() })
		replicas = append(replicas, mcpauth.Require(&mcpauth.RequireOptions{
			Lockout: lo, RateLimit: mcpauth.Limit{Rate: 0.001, Burst: 6}, RateLimiter: st,
		}, keys)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})))
	}
	do := func(h http.Handler, remote, key string) int {
		r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
		r.RemoteAddr = remote
		if key != "" {
			r.Header.Set("X-API-Key", key)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	ok := 0
	for i := range 20 {
		if do(replicas[i%2], "198.51.100.1:1", key) == http.StatusOK {
			ok++
		}
	}
	if ok != 6 {
		t.Fatalf("%d requests passed two replicas' shared limit, want 6", ok)
	}
	// Five guesses on each replica: the shared count reaches ten.
	for i := range 10 {
		if c := do(replicas[i%2], "192.0.2.99:1", "wrong-key-"+strconv.Itoa(i)+"-of-a-guesser"); c != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d", i, c)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		// No credential: refused with 401, or 429 when locked out, and
		// never counted.
		a, b := do(replicas[0], "192.0.2.99:1", ""), do(replicas[1], "192.0.2.99:1", "")
		if a == http.StatusTooManyRequests && b == http.StatusTooManyRequests {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replicas answer %d and %d, want 429 on both", a, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
