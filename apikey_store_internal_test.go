package mcpauth

import (
	"context"
	"crypto/sha256"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// gatedStore is a MemoryStore whose Gets are counted; the first (or with
// all set, every one) reads its answer and then waits for gate before it
// returns it, as a slow store would.
type gatedStore struct {
	*MemoryStore
	gate chan struct{}
	all  bool
	gets atomic.Int64
}

func (s *gatedStore) Get(ctx context.Context, key string) ([]byte, error) {
	v, err := s.MemoryStore.Get(ctx, key)
	if s.gets.Add(1) == 1 || s.all {
		<-s.gate
	}
	return v, err
}

// TestKeyStoreSingleflight sends one key from many goroutines with the
// caches off, and lets the store answer only once all but one are waiting:
// one read serves them all.
func TestKeyStoreSingleflight(t *testing.T) {
	st := &gatedStore{MemoryStore: NewMemoryStore(), gate: make(chan struct{}), all: true}
	k, _ := NewAPIKeys()
	if err := k.UseStore(st, &APIKeyStoreOptions{CacheTTL: -1}); err != nil {
		t.Fatal(err)
	}
	key := mustGenerate(t)
	if _, err := k.Create(context.Background(), APIKey{Key: key, Subject: "alice"}); err != nil {
		t.Fatal(err)
	}
	ks := k.store.Load()
	sum := sha256.Sum256([]byte(key))
	const n = 20
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			e, err := ks.lookup(context.Background(), &sum)
			if err != nil || e == nil || e.principal.Subject != "alice" {
				t.Errorf("lookup = %v, %v", e, err)
			}
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for ks.flight.waiting.Load() < n-1 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d lookups wait for the first", ks.flight.waiting.Load())
		}
		time.Sleep(time.Millisecond)
	}
	close(st.gate)
	wg.Wait()
	if got := st.gets.Load(); got != 1 {
		t.Fatalf("%d concurrent lookups made %d store reads, want 1", n, got)
	}
	// With the caches off, the next lookup reads the store again.
	if _, err := ks.lookup(context.Background(), &sum); err != nil || st.gets.Load() != 2 {
		t.Fatalf("a later lookup: %v, %d reads in all", err, st.gets.Load())
	}
}

// TestKeyStoreDeleteDuringRead deletes a key while a read of it is under
// way: a request that begins after Delete has returned does not wait for
// that read's (older) answer but reads again, and the older answer is not
// cached.
func TestKeyStoreDeleteDuringRead(t *testing.T) {
	st := &gatedStore{MemoryStore: NewMemoryStore(), gate: make(chan struct{})}
	k, _ := NewAPIKeys()
	if err := k.UseStore(st, nil); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	key := mustGenerate(t)
	if _, err := k.Create(ctx, APIKey{Key: key}); err != nil {
		t.Fatal(err)
	}
	ks := k.store.Load()
	sum := sha256.Sum256([]byte(key))
	before := make(chan *keyEntry)
	go func() {
		e, _ := ks.lookup(ctx, &sum)
		before <- e
	}()
	waitFor(t, "the first read", func() bool { return st.gets.Load() == 1 })
	if n, err := k.Delete(ctx, keyID(&sum)); n != 1 || err != nil {
		t.Fatalf("Delete = %d, %v", n, err)
	}
	after := make(chan *keyEntry)
	go func() {
		e, _ := ks.lookup(ctx, &sum)
		after <- e
	}()
	var got *keyEntry
	waitFor(t, "the lookup after Delete", func() bool {
		if ks.flight.waiting.Load() != 0 {
			t.Fatal("a lookup begun after Delete waits for a read begun before it")
		}
		select {
		case got = <-after:
			return true
		default:
			return false
		}
	})
	if got != nil {
		t.Fatal("a lookup begun after Delete found the key")
	}
	close(st.gate)
	if e := <-before; e == nil {
		t.Fatal("the read begun before Delete lost its answer") // it read the record
	}
	if e, err := ks.lookup(ctx, &sum); e != nil || err != nil {
		t.Fatalf("after both reads: %v, %v; the older answer was cached", e, err)
	}
}

// waitFor polls cond until it holds, failing after a generous bound.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen within 10 s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
