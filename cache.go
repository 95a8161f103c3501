package mcpauth

import (
	"sync"
	"sync/atomic"
)

// cacheShards is how many shards a hashCache has.
const cacheShards = 16

// hashCache remembers values by a SHA-256 (of a token or a key, never the
// secret itself) until a deadline: the JWT verifier's verified tokens, the
// introspector's answers, the stored API keys and the unknown ones. It is
// bounded, split into shards each under its own lock, and evicts at random
// when a shard is full: a flood of new hashes then costs each shard one
// eviction per insert and never grows it, and a read stays a read lock and
// a map lookup, with no bookkeeping.
type hashCache[V any] struct {
	shards [cacheShards]hashCacheShard[V]
}

type hashCacheShard[V any] struct {
	mu      sync.RWMutex
	entries map[[32]byte]hashCached[V]
	max     int
}

type hashCached[V any] struct {
	v     V
	until int64 // Unix nanoseconds
}

func newHashCache[V any](size int) *hashCache[V] {
	c := &hashCache[V]{}
	per := max((size+cacheShards-1)/cacheShards, 1)
	for i := range c.shards {
		c.shards[i] = hashCacheShard[V]{entries: make(map[[32]byte]hashCached[V]), max: per}
	}
	return c
}

func (c *hashCache[V]) shard(sum *[32]byte) *hashCacheShard[V] {
	return &c.shards[sum[0]%cacheShards]
}

// get returns the value cached for sum, if there is one still valid at now.
func (c *hashCache[V]) get(sum *[32]byte, now int64) (V, bool) {
	s := c.shard(sum)
	s.mu.RLock()
	e, ok := s.entries[*sum]
	s.mu.RUnlock()
	if !ok || now >= e.until {
		var zero V
		return zero, false
	}
	return e.v, true
}

// put caches v for sum until the deadline.
func (c *hashCache[V]) put(sum *[32]byte, v V, until, now int64) {
	s := c.shard(sum)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.putLocked(sum, v, until, now)
}

// putIf caches v for sum until the deadline, unless gen has moved on from
// want: a key was created or deleted through this APIKeys while v was being
// read, so v may predate it. The check is made under the shard's lock, and
// writers change gen before they remove, so that of a removal and a put of
// an older answer, the removal wins.
func (c *hashCache[V]) putIf(sum *[32]byte, v V, until, now int64, gen *atomic.Uint64, want uint64) {
	s := c.shard(sum)
	s.mu.Lock()
	defer s.mu.Unlock()
	if gen.Load() != want {
		return
	}
	s.putLocked(sum, v, until, now)
}

func (s *hashCacheShard[V]) putLocked(sum *[32]byte, v V, until, now int64) {
	if _, ok := s.entries[*sum]; !ok && len(s.entries) >= s.max {
		s.evict(now)
	}
	s.entries[*sum] = hashCached[V]{v: v, until: until}
}

// remove drops what is cached for sum and returns it.
func (c *hashCache[V]) remove(sum *[32]byte) (V, bool) {
	s := c.shard(sum)
	s.mu.Lock()
	e, ok := s.entries[*sum]
	delete(s.entries, *sum)
	s.mu.Unlock()
	return e.v, ok
}

// evict makes room for one entry in a full shard: the first expired entry
// among a few looked at from a random place, or else the last of them.
func (s *hashCacheShard[V]) evict(now int64) {
	const samples = 8
	n := 0
	for k, e := range s.entries {
		n++
		if now >= e.until || n == samples {
			delete(s.entries, k)
			return
		}
	}
	for k := range s.entries {
		delete(s.entries, k)
		return
	}
}

func (c *hashCache[V]) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.entries)
		s.mu.RUnlock()
	}
	return n
}
