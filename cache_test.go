package mcpauth

import (
	"crypto/sha256"
	"fmt"
	"sync/atomic"
	"testing"
)

// TestHashCacheBounded fills caches of several sizes with far more hashes
// than they hold: none grows past its size (rounded up to whole shards).
func TestHashCacheBounded(t *testing.T) {
	for _, size := range []int{1, 100, 1000} {
		c := newHashCache[struct{}](size)
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

// TestHashCachePutAfterChange checks that an answer read before a creation
// or deletion is not cached after it.
func TestHashCachePutAfterChange(t *testing.T) {
	c := newHashCache[struct{}](10)
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
