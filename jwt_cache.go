package mcpauth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"sync"
	"time"
)

// revokedKey names a revoked token in the [Store]: "revoked:" and the hex
// SHA-256 of its revocation ID, so that a key is short whatever the token
// says.
func revokedKey(id string) string {
	sum := sha256.Sum256([]byte(id))
	return "revoked:" + hex.EncodeToString(sum[:])
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
	x5t          string // the certificate the token is bound to, if any
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

// RevokeToken records in store that the token of issuer with the given jti
// is revoked, for ttl (until the token has expired, leeway included; zero:
// for good). Every [JWTVerifier] whose
// Store is store refuses it from then on, cached or not, with 401
// (ErrRevoked). It is for an authorization server, or an operator's tool,
// that knows a token by its jti; a verifier that holds the token itself
// calls [JWTVerifier.Revoke].
func RevokeToken(ctx context.Context, store Store, issuer, jti string, ttl time.Duration) error {
	if store == nil || jti == "" || ttl < 0 {
		return errors.New("mcpauth: RevokeToken needs a store, a jti and a ttl of zero or more")
	}
	if err := store.Set(ctx, revokedKey(jtiRevocationID(issuer, jti)), nil, ttl); err != nil {
		return err
	}
	notifyRevoked()
	return nil
}

// jwtState is what an open request of a token asks whether the token has
// been revoked since (see credentialState).
type jwtState struct {
	store       Store
	id          string // the token's revocation ID
	sharedStore bool
}

func (s *jwtState) isRevoked(ctx context.Context) (bool, error) {
	_, err := s.store.Get(ctx, revokedKey(s.id))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrNotFound):
		return false, nil
	}
	return false, err
}

func (s *jwtState) shared() bool { return s.sharedStore }

// jtiRevocationID is the revocation ID of a token with a jti.
func jtiRevocationID(issuer, jti string) string { return "jti:" + issuer + "#" + jti }
