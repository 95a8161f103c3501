package mcpauth

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestKeyCacheBounded fills caches of several sizes with far more hashes
// than they hold: none grows past its size (rounded up to whole shards).
func TestKeyCacheBounded(t *testing.T) {
	for _, size := range []int{1, 100, 1000} {
		c := newKeyCache[struct{}](size)
		var gen atomic.Uint64
		for i := range 20 * size {
			sum := sha256.Sum256(fmt.Appendf(nil, "%d", i))
			c.putIf(&sum, struct{}{}, 100, 0, &gen, 0)
		}
		limit := cacheShards * ((size + cacheShards - 1) / cacheShards)
		if n := c.len(); n > limit || n == 0 {
			t.Errorf("size %d: holds %d entries, want 1 to %d", size, n, limit)
		}
	}
}

// TestKeyCachePutAfterChange checks that an answer read before a creation
// or deletion is not cached after it.
func TestKeyCachePutAfterChange(t *testing.T) {
	c := newKeyCache[struct{}](10)
	var gen atomic.Uint64
	sum := sha256.Sum256([]byte("k"))
	want := gen.Load()
	gen.Add(1) // a Create or Delete ran meanwhile
	c.putIf(&sum, struct{}{}, 100, 0, &gen, want)
	if _, ok := c.get(&sum, 0); ok {
		t.Fatal("an answer older than a change was cached")
	}
	c.putIf(&sum, struct{}{}, 100, 0, &gen, gen.Load())
	if _, ok := c.get(&sum, 0); !ok {
		t.Fatal("a current answer was not cached")
	}
	if _, ok := c.get(&sum, 100); ok {
		t.Fatal("an entry was returned at its deadline")
	}
}

// gatedStore is a MemoryStore whose Gets wait for gate and are counted.
type gatedStore struct {
	*MemoryStore
	gate chan struct{}
	gets atomic.Int64
}

func (s *gatedStore) Get(ctx context.Context, key string) ([]byte, error) {
	s.gets.Add(1)
	<-s.gate
	return s.MemoryStore.Get(ctx, key)
}

// TestKeyStoreSingleflight sends one key from many goroutines with the
// caches off, and lets the store answer only once all but one are waiting:
// one read serves them all.
func TestKeyStoreSingleflight(t *testing.T) {
	st := &gatedStore{MemoryStore: NewMemoryStore(), gate: make(chan struct{})}
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
