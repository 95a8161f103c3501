package mcpauth

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// TestLockoutSharedStore runs two replicas on one store: failures counted
// on both lock out on both, and a lockout started on one holds on the
// other.
func TestLockoutSharedStore(t *testing.T) {
	testLockoutShared(t, NewMemoryStore())
}

func testLockoutShared(t *testing.T, st Store) {
	clock := newTestClock()
	opts := LockoutOptions{Store: st, SyncInterval: time.Hour}
	a, eventsA := newTestLockout(t, opts, clock)
	b, eventsB := newTestLockout(t, opts, clock)
	ctx := context.Background()
	sync := func(l *Lockout) {
		t.Helper()
		if err := l.sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	src := "192.0.2.44"
	for range defaultSourceFailures / 2 {
		a.fail(ctx, src, "", "")
		b.fail(ctx, src, "", "")
	}
	if a.check(src, "") != nil || b.check(src, "") != nil {
		t.Fatal("locked out before the counts were shared")
	}
	sync(a)
	sync(b) // b sees a's half, with its own: the threshold
	if err := b.check(src, ""); err == nil {
		t.Fatal("b: not locked out after the shared count reached the threshold")
	}
	sync(a)
	if got := retryAfter(t, a.check(src, "")); got <= 0 || got > time.Minute {
		t.Fatalf("a: lockout of %v, want up to 1m", got)
	}
	if n := eventsA.count(EventLockout, OutcomeDenied) + eventsB.count(EventLockout, OutcomeDenied); n != 1 {
		t.Fatalf("%d lockout started events, want 1", n)
	}
	// A third replica, started later, learns the lockout at its first sync.
	c, _ := newTestLockout(t, opts, clock)
	sync(c)
	if err := c.check(src, ""); err == nil {
		t.Fatal("c: lockout not adopted from the store")
	}
	clock.advance(time.Minute)
	sync(a)
	sync(b)
	sync(c)
	for i, l := range []*Lockout{a, b, c} {
		if err := l.check(src, ""); err != nil {
			t.Fatalf("replica %d: still locked out after it expired: %v", i, err)
		}
	}
	if n := eventsA.count(EventLockout, OutcomeSuccess) + eventsB.count(EventLockout, OutcomeSuccess); n != 1 {
		t.Fatalf("%d lockout ended events, want 1", n)
	}
	// The next lockout grows, wherever it starts.
	for range defaultSourceFailures {
		a.fail(ctx, src, "", "")
	}
	sync(a)
	sync(c)
	if got := retryAfter(t, c.check(src, "")); got != 2*time.Minute {
		t.Fatalf("c: second lockout of %v, want 2m", got)
	}
}

// TestLockoutSyncWritesBounded checks that a failure costs no store write
// of its own: a sync writes each changed entry once, at most
// maxSyncWrites of them.
func TestLockoutSyncWritesBounded(t *testing.T) {
	clock := newTestClock()
	st := &countingStore{Store: NewMemoryStore()}
	l, _ := newTestLockout(t, LockoutOptions{Store: st, SyncInterval: time.Hour}, clock)
	ctx := context.Background()
	for i := range 5000 {
		l.fail(ctx, "10.2."+strconv.Itoa(i/256)+"."+strconv.Itoa(i%256), "", "")
		l.fail(ctx, "10.2."+strconv.Itoa(i/256)+"."+strconv.Itoa(i%256), "", "")
	}
	if n := st.writes.Load(); n != 0 {
		t.Fatalf("%d store writes before a sync, want 0", n)
	}
	if err := l.sync(ctx); err != nil {
		t.Fatal(err)
	}
	if n := st.writes.Load(); n != maxSyncWrites {
		t.Fatalf("%d store writes in a sync, want %d", n, maxSyncWrites)
	}
}

type countingStore struct {
	Store
	writes atomic.Int64
}

func (s *countingStore) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	s.writes.Add(1)
	return s.Store.Set(ctx, key, value, ttl)
}

// downStore fails every call the lockout makes.
type downStore struct{ Store }

func (downStore) Set(context.Context, string, []byte, time.Duration) error {
	return errors.New("store down")
}
func (downStore) List(context.Context, string, func(string, []byte) error) error {
	return errors.New("store down")
}

// TestLockoutStoreDown: a store that fails makes a sync fail, and the
// replica goes on counting and locking out locally.
func TestLockoutStoreDown(t *testing.T) {
	clock := newTestClock()
	l, _ := newTestLockout(t, LockoutOptions{SourceFailures: 2, Store: downStore{}, SyncInterval: time.Hour}, clock)
	ctx := context.Background()
	l.fail(ctx, "192.0.2.1", "", "")
	if err := l.sync(ctx); err == nil {
		t.Fatal("sync with a failing store: no error")
	}
	l.fail(ctx, "192.0.2.1", "", "")
	if err := l.check("192.0.2.1", ""); err == nil {
		t.Fatal("not locked out while the store is down")
	}
}

// TestLockoutStoreDownReported: the sharing goroutine reports a failing
// store once, not at every interval.
func TestLockoutStoreDownReported(t *testing.T) {
	events := &eventLog{}
	l, err := newLockout(&LockoutOptions{Store: downStore{}, SyncInterval: time.Millisecond, Events: events}, nil)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for events.count(EventKeySource, OutcomeFailure) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("a failing store was never reported")
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // some more failing syncs
	_ = l.Close()
	if n := events.count(EventKeySource, OutcomeFailure); n != 1 {
		t.Fatalf("%d store events, want 1", n)
	}
}
