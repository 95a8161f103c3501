package mcpauth

import (
	"sync"
	"sync/atomic"
)

// keyCache remembers, for a short time, what the store answered for a key
// hash: the key's entry (the positive cache) or that there is no such key
// (the negative cache). It is bounded, split into shards each under its
// own lock, and evicts at random when a shard is full, as tokenCache does:
// a flood of new hashes then costs each shard one eviction per insert and
// never grows it.
type keyCache[V any] struct {
	shards [cacheShards]keyCacheShard[V]
}

type keyCacheShard[V any] struct {
	mu      sync.RWMutex
	entries map[[32]byte]keyCached[V]
	max     int
}

type keyCached[V any] struct {
	v     V
	until int64 // Unix nanoseconds
}

func newKeyCache[V any](size int) *keyCache[V] {
	c := &keyCache[V]{}
	per := max((size+cacheShards-1)/cacheShards, 1)
	for i := range c.shards {
		c.shards[i] = keyCacheShard[V]{entries: make(map[[32]byte]keyCached[V]), max: per}
	}
	return c
}

func (c *keyCache[V]) shard(sum *[32]byte) *keyCacheShard[V] {
	return &c.shards[sum[1]%cacheShards]
}

// get returns the value cached for sum, if there is one still valid at now.
func (c *keyCache[V]) get(sum *[32]byte, now int64) (V, bool) {
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

// putIf caches v for sum until the deadline, unless gen has moved on from
// want: a key was created or deleted through this APIKeys while v was being
// read, so v may predate it. The check is made under the shard's lock, and
// writers change gen before they remove, so that of a removal and a put of
// an older answer, the removal wins.
func (c *keyCache[V]) putIf(sum *[32]byte, v V, until, now int64, gen *atomic.Uint64, want uint64) {
	s := c.shard(sum)
	s.mu.Lock()
	defer s.mu.Unlock()
	if gen.Load() != want {
		return
	}
	if _, ok := s.entries[*sum]; !ok && len(s.entries) >= s.max {
		s.evict(now)
	}
	s.entries[*sum] = keyCached[V]{v: v, until: until}
}

// remove drops what is cached for sum and returns it.
func (c *keyCache[V]) remove(sum *[32]byte) (V, bool) {
	s := c.shard(sum)
	s.mu.Lock()
	e, ok := s.entries[*sum]
	delete(s.entries, *sum)
	s.mu.Unlock()
	return e.v, ok
}

// evict makes room for one entry in a full shard: the first expired entry
// among a few looked at from a random place, or else the last of them.
func (s *keyCacheShard[V]) evict(now int64) {
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

func (c *keyCache[V]) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.entries)
		s.mu.RUnlock()
	}
	return n
}

// keyFlights lets one goroutine read the store for a key hash while the
// others that want the same hash wait for its answer, so that a burst of
// requests with one uncached key costs one store call.
type keyFlights struct {
	mu      sync.Mutex
	calls   map[[32]byte]*keyFlight
	waiting atomic.Int64 // goroutines waiting for another's read (for tests)
}

type keyFlight struct {
	gen  uint64 // of the keyStore when the read began
	done chan struct{}
	e    *keyEntry
	err  error
}

// do returns fn's answer for sum, calling fn only if no call for sum is in
// progress that began at the same generation gen: a read that began before
// a creation or deletion through this APIKeys may predate it, so a request
// that began after it reads again rather than wait for that answer. A
// waiter gives up when its done channel closes (its request ended), with
// errFlightAbandoned.
func (g *keyFlights) do(sum *[32]byte, gen uint64, done <-chan struct{}, fn func() (*keyEntry, error)) (*keyEntry, error) {
	g.mu.Lock()
	if f, ok := g.calls[*sum]; ok && f.gen == gen {
		g.mu.Unlock()
		g.waiting.Add(1)
		defer g.waiting.Add(-1)
		select {
		case <-f.done:
			return f.e, f.err
		case <-done:
			return nil, errFlightAbandoned
		}
	}
	if g.calls == nil {
		g.calls = make(map[[32]byte]*keyFlight)
	}
	f := &keyFlight{gen: gen, done: make(chan struct{})}
	g.calls[*sum] = f
	g.mu.Unlock()

	defer func() {
		g.mu.Lock()
		if g.calls[*sum] == f {
			delete(g.calls, *sum)
		}
		g.mu.Unlock()
		close(f.done)
	}()
	f.e, f.err = fn()
	return f.e, f.err
}
