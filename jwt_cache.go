package mcpauth

import (
	"context"
	"sync"
	"time"
)

// A RevocationStore records revoked tokens. [JWTVerifier] asks it on every
// request, including those whose token it has cached, so a revoked token
// stops working at once. An implementation shared by several replicas (a
// database, Redis) makes a revocation hold on all of them; [NewMemoryRevocations]
// holds it in one process.
//
// Implementations must be safe for concurrent use.
type RevocationStore interface {
	// Revoke records that the token named id is revoked. The token expires
	// by itself at expiry, after which the record may be dropped; a zero
	// expiry means keep it.
	Revoke(ctx context.Context, id string, expiry time.Time) error
	// IsRevoked reports whether the token named id is revoked. An error
	// means the store could not tell; the request is then refused with 503,
	// never let through.
	IsRevoked(ctx context.Context, id string) (bool, error)
}

// MemoryRevocations is a [RevocationStore] in memory: revocations last until
// the process ends or the token expires. The zero value is an empty store.
type MemoryRevocations struct {
	mu      sync.RWMutex
	revoked map[string]time.Time
	now     func() time.Time
	puts    int
}

// NewMemoryRevocations returns an empty in-memory revocation store.
func NewMemoryRevocations() *MemoryRevocations {
	return newMemoryRevocations(time.Now)
}

func newMemoryRevocations(now func() time.Time) *MemoryRevocations {
	return &MemoryRevocations{revoked: map[string]time.Time{}, now: now}
}

// Revoke implements [RevocationStore].
func (m *MemoryRevocations) Revoke(_ context.Context, id string, expiry time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.revoked == nil {
		m.revoked = map[string]time.Time{}
	}
	m.revoked[id] = expiry
	// Drop the records of expired tokens now and then, so that the map
	// does not grow with every revocation ever made.
	if m.puts++; m.puts%64 == 0 {
		now := time.Now()
		if m.now != nil {
			now = m.now()
		}
		for k, exp := range m.revoked {
			if !exp.IsZero() && now.After(exp) {
				delete(m.revoked, k)
			}
		}
	}
	return nil
}

// IsRevoked implements [RevocationStore].
func (m *MemoryRevocations) IsRevoked(_ context.Context, id string) (bool, error) {
	m.mu.RLock()
	_, ok := m.revoked[id]
	m.mu.RUnlock()
	return ok, nil
}

// tokenCache remembers verified tokens by their SHA-256. It is split into
// shards, each with its own lock, so that concurrent requests rarely wait on
// one another.
type tokenCache struct {
	ttl    time.Duration
	shards [cacheShards]cacheShard
}

const cacheShards = 16

type cacheShard struct {
	mu      sync.RWMutex
	entries map[[32]byte]*cacheEntry
	max     int
}

type cacheEntry struct {
	principal    *Principal // sealed: shared by every request with the token
	revocationID string
	until        time.Time
}

func newTokenCache(ttl time.Duration, size int) *tokenCache {
	c := &tokenCache{ttl: ttl}
	per := (size + cacheShards - 1) / cacheShards
	for i := range c.shards {
		c.shards[i] = cacheShard{entries: make(map[[32]byte]*cacheEntry), max: per}
	}
	return c
}

func (c *tokenCache) shard(sum *[32]byte) *cacheShard {
	return &c.shards[sum[0]%cacheShards]
}

// get returns the entry for a token, or nil if there is none or it is no
// longer valid at now.
func (c *tokenCache) get(sum *[32]byte, now time.Time) *cacheEntry {
	s := c.shard(sum)
	s.mu.RLock()
	e := s.entries[*sum]
	s.mu.RUnlock()
	if e == nil || !now.Before(e.until) {
		return nil
	}
	return e
}

func (c *tokenCache) put(sum *[32]byte, e *cacheEntry, now time.Time) {
	s := c.shard(sum)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.entries[*sum]; !ok && len(s.entries) >= s.max {
		s.evict(now)
	}
	s.entries[*sum] = e
}

// evict makes room in a full shard for one entry, in constant time: it
// looks at a few entries, from a random place (Go starts each map iteration
// at one), drops the first that has expired or, if none has, the last it
// looked at. Random eviction needs no bookkeeping on the read path, which
// stays a read lock and a map lookup.
func (s *cacheShard) evict(now time.Time) {
	const samples = 8
	n := 0
	for k, e := range s.entries {
		n++
		if !now.Before(e.until) || n == samples {
			delete(s.entries, k)
			return
		}
	}
	// Fewer entries than samples and none expired.
	for k := range s.entries {
		delete(s.entries, k)
		return
	}
}

func (c *tokenCache) remove(sum *[32]byte) {
	s := c.shard(sum)
	s.mu.Lock()
	delete(s.entries, *sum)
	s.mu.Unlock()
}
