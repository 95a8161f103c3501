package mcpauth

import (
	"context"
	"errors"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testClock is a clock the test moves.
type testClock struct{ t atomic.Int64 }

func newTestClock() *testClock {
	c := &testClock{}
	c.t.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *testClock) now() time.Time          { return time.Unix(0, c.t.Load()) }
func (c *testClock) advance(d time.Duration) { c.t.Add(int64(d)) }

// eventLog collects events.
type eventLog struct {
	mu     sync.Mutex
	events []Event
}

func (l *eventLog) Record(_ context.Context, e Event) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
}

func (l *eventLog) count(kind EventKind, outcome Outcome) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.events {
		if e.Kind == kind && e.Outcome == outcome {
			n++
		}
	}
	return n
}

func newTestLockout(t *testing.T, opts LockoutOptions, clock *testClock) (*Lockout, *eventLog) {
	t.Helper()
	events := &eventLog{}
	opts.Events = events
	l, err := newLockout(&opts, clock.now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l, events
}

func retryAfter(t *testing.T, err error) time.Duration {
	t.Helper()
	var rl *RateLimitError
	if !errors.As(err, &rl) {
		t.Fatalf("err = %v, want a *RateLimitError", err)
	}
	return rl.RetryAfter
}

func TestLockoutStartGrowthExpiry(t *testing.T) {
	clock := newTestClock()
	l, events := newTestLockout(t, LockoutOptions{}, clock)
	ctx := context.Background()
	src := "192.0.2.7"
	want := []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 16 * time.Minute, 32 * time.Minute, time.Hour, time.Hour}
	for round, d := range want {
		for i := range defaultSourceFailures {
			if err := l.check(src, ""); err != nil {
				t.Fatalf("round %d: locked out after %d failures, want %d", round, i, defaultSourceFailures)
			}
			l.fail(ctx, src, "", "")
		}
		if got := retryAfter(t, l.check(src, "")); got != d {
			t.Fatalf("round %d: lockout of %v, want %v", round, got, d)
		}
		// Attempts during a lockout are refused and not counted again.
		l.fail(ctx, src, "", "")
		clock.advance(d - time.Second)
		if err := l.check(src, ""); err == nil {
			t.Fatalf("round %d: unlocked a second early", round)
		}
		if err := l.check("192.0.2.8", ""); err != nil {
			t.Fatalf("round %d: another address is locked out: %v", round, err)
		}
		clock.advance(time.Second)
		if err := l.check(src, ""); err != nil {
			t.Fatalf("round %d: still locked out after %v: %v", round, d, err)
		}
	}
	if s, e := events.count(EventLockout, OutcomeDenied), events.count(EventLockout, OutcomeSuccess); s != len(want) || e != len(want) {
		t.Fatalf("%d started and %d ended events, want %d each", s, e, len(want))
	}
	// A day after the last lockout's end, growth starts over.
	clock.advance(lockMemory)
	for range defaultSourceFailures {
		l.fail(ctx, src, "", "")
	}
	if got := retryAfter(t, l.check(src, "")); got != time.Minute {
		t.Fatalf("after a quiet day: lockout of %v, want 1m", got)
	}
}

func TestLockoutWindow(t *testing.T) {
	clock := newTestClock()
	l, _ := newTestLockout(t, LockoutOptions{SourceFailures: 3, Window: time.Minute}, clock)
	ctx := context.Background()
	l.fail(ctx, "a", "", "")
	l.fail(ctx, "a", "", "")
	clock.advance(time.Minute)
	l.fail(ctx, "a", "", "")
	if err := l.check("a", ""); err != nil {
		t.Fatalf("failures of an old window counted: %v", err)
	}
	l.fail(ctx, "a", "", "")
	l.fail(ctx, "a", "", "")
	if err := l.check("a", ""); err == nil {
		t.Fatal("3 failures within the window did not lock out")
	}
}

func TestLockoutCredential(t *testing.T) {
	tests := []struct {
		name            string
		strict          bool
		lockedElsewhere bool
	}{
		{"per source (default)", false, false},
		{"LockCredential", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newTestClock()
			l, events := newTestLockout(t, LockoutOptions{LockCredential: tt.strict}, clock)
			ctx := context.Background()
			for range defaultCredentialFailures {
				l.fail(ctx, "198.51.100.1", "user:alice", "")
			}
			if err := l.check("198.51.100.1", "user:alice"); err == nil {
				t.Fatal("credential not locked out at its source")
			}
			if err := l.check("198.51.100.1", "user:bob"); err != nil {
				t.Fatalf("another credential locked out: %v", err)
			}
			if err := l.check("198.51.100.1", ""); err != nil {
				t.Fatalf("the source is locked out after %d failures: %v", defaultCredentialFailures, err)
			}
			err := l.check("203.0.113.9", "user:alice")
			if got := err != nil; got != tt.lockedElsewhere {
				t.Fatalf("locked out from another address: %v, want %v", got, tt.lockedElsewhere)
			}
			if n := events.count(EventLockout, OutcomeDenied); n != 1 {
				t.Fatalf("%d lockout events, want 1", n)
			}
		})
	}
}

func TestLockoutFloodKeepsLocked(t *testing.T) {
	clock := newTestClock()
	const capacity = 2000
	l, _ := newTestLockout(t, LockoutOptions{SourceFailures: 2, MaxEntries: capacity}, clock)
	ctx := context.Background()
	var locked []string
	for i := range 100 {
		src := "10.0.0." + strconv.Itoa(i)
		l.fail(ctx, src, "", "")
		l.fail(ctx, src, "", "")
		locked = append(locked, src)
	}
	for i := range 200_000 {
		l.fail(ctx, "2001:db8:"+strconv.Itoa(i/65536)+":"+strconv.FormatInt(int64(i%65536), 16)+"::/64", "", "")
	}
	if n := l.size.Load(); n > capacity {
		t.Fatalf("%d entries, over the bound %d", n, capacity)
	}
	for _, src := range locked {
		if err := l.check(src, ""); err == nil {
			t.Fatalf("%s unlocked early by the flood", src)
		}
	}
	// When every entry is locked out, new ones go uncounted: nothing is
	// unlocked to make room.
	small, _ := newTestLockout(t, LockoutOptions{SourceFailures: 1, MaxEntries: 10}, clock)
	for i := range 50 {
		small.fail(ctx, "10.1.0."+strconv.Itoa(i), "", "")
	}
	for i := range 10 {
		if err := small.check("10.1.0."+strconv.Itoa(i), ""); err == nil {
			t.Fatalf("10.1.0.%d unlocked early", i)
		}
	}
	if n := small.size.Load(); n != 10 {
		t.Fatalf("%d entries, want 10", n)
	}
}

func TestLockoutSource(t *testing.T) {
	proxy := netip.MustParsePrefix("10.0.0.0/8")
	tests := []struct {
		name    string
		remote  string
		headers map[string]string
		proxies []netip.Prefix
		want    string
	}{
		{"ipv4", "192.0.2.1:1234", nil, nil, "192.0.2.1"},
		{"ipv4-mapped", "[::ffff:192.0.2.1]:1234", nil, nil, "192.0.2.1"},
		{"ipv6 grouped by /64", "[2001:db8:1:2:3:4:5:6]:443", nil, nil, "2001:db8:1:2::/64"},
		{"ipv6 zone dropped", "[fe80::1%eth0]:443", nil, nil, "fe80::/64"},
		{"forwarded header ignored without proxies", "192.0.2.1:1", map[string]string{"X-Forwarded-For": "203.0.113.5"}, nil, "192.0.2.1"},
		{"forwarded header ignored from an untrusted address", "192.0.2.1:1", map[string]string{"X-Forwarded-For": "203.0.113.5"}, []netip.Prefix{proxy}, "192.0.2.1"},
		{"x-forwarded-for from a proxy", "10.1.2.3:1", map[string]string{"X-Forwarded-For": "198.51.100.1, 203.0.113.5, 10.9.9.9"}, []netip.Prefix{proxy}, "203.0.113.5"},
		{"forwarded from a proxy", "10.1.2.3:1", map[string]string{"Forwarded": `for=192.0.2.60;proto=https, for="[2001:db8::9]:4711"`}, []netip.Prefix{proxy}, "2001:db8::/64"},
		{"bad forwarded value: the proxy counts", "10.1.2.3:1", map[string]string{"X-Forwarded-For": "junk"}, []netip.Prefix{proxy}, "10.1.2.3"},
		{"mapped proxy prefix", "10.1.2.3:1", map[string]string{"X-Forwarded-For": "198.51.100.1"}, []netip.Prefix{netip.MustParsePrefix("::ffff:10.0.0.0/104")}, "198.51.100.1"},
		{"not an address", "@pipe", nil, nil, "@pipe"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, _ := newTestLockout(t, LockoutOptions{TrustedProxies: tt.proxies}, newTestClock())
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tt.remote
			for k, v := range tt.headers {
				r.Header.Set(k, v)
			}
			if got := l.Source(r); got != tt.want {
				t.Fatalf("Source = %q, want %q", got, tt.want)
			}
			// Require's check before authentication (which finds the
			// address without forming its string) refuses the same
			// source once it is locked out, and only that one.
			a := abuse{lockout: l}
			if _, err := a.before(r); err != nil {
				t.Fatalf("before the lockout: %v", err)
			}
			for range l.opts.SourceFailures {
				l.fail(context.Background(), tt.want, "", "")
			}
			if _, err := a.before(r); retryAfter(t, err) <= 0 {
				t.Fatalf("after the lockout: %v", err)
			}
			other := httptest.NewRequest("GET", "/", nil)
			other.RemoteAddr = "[2001:db8:ffff::1]:1"
			if _, err := a.before(other); err != nil {
				t.Fatalf("another source: %v", err)
			}
			if n := testing.AllocsPerRun(100, func() { _, _ = a.before(other) }); n != 0 {
				t.Errorf("the check of a source that is not locked out, while one is, allocates %v times", n)
			}
		})
	}
}

func TestLockoutOptionsErrors(t *testing.T) {
	for _, o := range []LockoutOptions{
		{Window: -1}, {Duration: -1}, {MaxDuration: -1}, {MaxEntries: -1}, {SyncInterval: -1},
		{Duration: time.Hour, MaxDuration: time.Minute},
		{TrustedProxies: []netip.Prefix{{}}},
	} {
		if _, err := NewLockout(&o); err == nil {
			t.Errorf("NewLockout(%+v): no error", o)
		}
	}
}
