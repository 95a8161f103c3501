package mcpauth

import (
	"context"
	"errors"
	"hash/maphash"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A Store keeps the state that must outlive a request: revoked tokens
// today; authorization codes, refresh-token families, registered clients,
// signing keys and lockout counters as those parts arrive. Every domain rule
// (single use, rotation, revocation) is written once, above it, so that a
// backend is small: [NewMemoryStore] here, bbolt and Redis in their own
// packages, and any other that passes the contract suite in store/storetest.
//
// Keys are short ASCII strings chosen by mcpauth, of the form
// "kind:identifier"; a secret appears in a key only as its hash. A ttl of
// zero means no expiry; an entry past its ttl is gone for every method.
// Implementations must be safe for concurrent use, and each method atomic:
// of two Takes of one key, exactly one gets the value, even across
// processes for a shared backend. An error other than [ErrNotFound] or
// [ErrExists] means the store could not answer; callers then fail closed.
type Store interface {
	// Get returns the value of key, or ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, error)
	// Set stores value under key, replacing any value it had.
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// Create stores value under key only if key has no value; otherwise it
	// returns ErrExists and changes nothing.
	Create(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// Take returns the value of key and deletes it, atomically, or returns
	// ErrNotFound: what makes a code or a refresh token single-use.
	Take(ctx context.Context, key string) ([]byte, error)
	// Delete removes key. Deleting a key that has no value is not an error.
	Delete(ctx context.Context, key string) error
	// Incr adds one to the counter under key and returns the new count. A
	// key with no value starts at zero and gets ttl; an existing counter
	// keeps its expiry. The value is the count in decimal, as Get returns it.
	Incr(ctx context.Context, key string, ttl time.Duration) (int64, error)
	// List calls fn for each key that starts with prefix and has a value, in
	// no particular order, until fn returns an error, which List returns.
	// fn may call the store.
	List(ctx context.Context, prefix string, fn func(key string, value []byte) error) error
}

// The errors of a [Store] that are answers, not faults.
var (
	ErrNotFound = errors.New("mcpauth: store: not found")
	ErrExists   = errors.New("mcpauth: store: key exists")
)

// errNegativeTTL refuses a negative ttl, which no backend can store.
var errNegativeTTL = errors.New("mcpauth: store: negative ttl")

// MemoryStore is a [Store] in the memory of one process: for tests, for
// throwaway demos, and for state that one replica alone needs. Nothing in
// it survives a restart. Expired entries are dropped as they are met and
// by a sweep of one shard every few writes, so its size follows what is
// live.
//
// The zero value is an empty store, ready to use.
type MemoryStore struct {
	shards [memoryShards]memoryShard
	now    func() time.Time // nil means time.Now
}

// shardSeed spreads keys over the shards of every MemoryStore.
var shardSeed = maphash.MakeSeed()

const (
	memoryShards = 32
	// sweepEvery is how many writes to a shard pass between two sweeps of
	// its expired entries.
	sweepEvery = 256
)

type memoryShard struct {
	mu      sync.Mutex
	entries map[string]memoryEntry
	writes  int
}

type memoryEntry struct {
	value   []byte
	expires int64 // Unix nanoseconds; 0 means never
}

// NewMemoryStore returns an empty in-memory store.
func NewMemoryStore() *MemoryStore {
	return newMemoryStore(time.Now)
}

func newMemoryStore(now func() time.Time) *MemoryStore {
	return &MemoryStore{now: now}
}

func (s *MemoryStore) shard(key string) *memoryShard {
	return &s.shards[maphash.String(shardSeed, key)%memoryShards]
}

func (s *MemoryStore) clock() time.Time {
	if s.now == nil {
		return time.Now()
	}
	return s.now()
}

func (s *MemoryStore) deadline(ttl time.Duration) (int64, error) {
	switch {
	case ttl < 0:
		return 0, errNegativeTTL
	case ttl == 0:
		return 0, nil
	}
	return s.clock().Add(ttl).UnixNano(), nil
}

// live returns key's entry if it has one that has not expired, dropping an
// expired one. The shard's lock is held.
func (sh *memoryShard) live(key string, now int64) (memoryEntry, bool) {
	e, ok := sh.entries[key]
	if !ok {
		return e, false
	}
	if e.expires != 0 && now >= e.expires {
		delete(sh.entries, key)
		return e, false
	}
	return e, true
}

// wrote counts a write and now and then sweeps the shard's expired entries.
// The shard's lock is held.
func (sh *memoryShard) wrote(now int64) {
	if sh.writes++; sh.writes%sweepEvery != 0 {
		return
	}
	for k, e := range sh.entries {
		if e.expires != 0 && now >= e.expires {
			delete(sh.entries, k)
		}
	}
}

// Get implements [Store].
func (s *MemoryStore) Get(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sh := s.shard(key)
	sh.mu.Lock()
	e, ok := sh.live(key, s.clock().UnixNano())
	sh.mu.Unlock()
	if !ok {
		return nil, ErrNotFound
	}
	return clone(e.value), nil
}

// Set implements [Store].
func (s *MemoryStore) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	return s.put(ctx, key, value, ttl, false)
}

// Create implements [Store].
func (s *MemoryStore) Create(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	return s.put(ctx, key, value, ttl, true)
}

func (s *MemoryStore) put(ctx context.Context, key string, value []byte, ttl time.Duration, create bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	exp, err := s.deadline(ttl)
	if err != nil {
		return err
	}
	now := s.clock().UnixNano()
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.live(key, now); ok && create {
		return ErrExists
	}
	if sh.entries == nil {
		sh.entries = make(map[string]memoryEntry)
	}
	sh.entries[key] = memoryEntry{value: clone(value), expires: exp}
	sh.wrote(now)
	return nil
}

// Take implements [Store].
func (s *MemoryStore) Take(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sh := s.shard(key)
	sh.mu.Lock()
	e, ok := sh.live(key, s.clock().UnixNano())
	if ok {
		delete(sh.entries, key)
	}
	sh.mu.Unlock()
	if !ok {
		return nil, ErrNotFound
	}
	return e.value, nil // no longer shared with the map
}

// Delete implements [Store].
func (s *MemoryStore) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	sh := s.shard(key)
	sh.mu.Lock()
	delete(sh.entries, key)
	sh.mu.Unlock()
	return nil
}

// Incr implements [Store].
func (s *MemoryStore) Incr(ctx context.Context, key string, ttl time.Duration) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	exp, err := s.deadline(ttl)
	if err != nil {
		return 0, err
	}
	now := s.clock().UnixNano()
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	var n int64
	if e, ok := sh.live(key, now); ok {
		if n, err = strconv.ParseInt(string(e.value), 10, 64); err != nil {
			return 0, errors.New("mcpauth: store: Incr of a value that is not a counter")
		}
		exp = e.expires
	}
	n++
	if sh.entries == nil {
		sh.entries = make(map[string]memoryEntry)
	}
	sh.entries[key] = memoryEntry{value: strconv.AppendInt(nil, n, 10), expires: exp}
	sh.wrote(now)
	return n, nil
}

// List implements [Store]. It copies each shard's matching entries before
// calling fn, so fn may use the store.
func (s *MemoryStore) List(ctx context.Context, prefix string, fn func(key string, value []byte) error) error {
	type kv struct {
		k string
		v []byte
	}
	for i := range s.shards {
		if err := ctx.Err(); err != nil {
			return err
		}
		sh := &s.shards[i]
		now := s.clock().UnixNano()
		var found []kv
		sh.mu.Lock()
		for k, e := range sh.entries {
			if strings.HasPrefix(k, prefix) && (e.expires == 0 || now < e.expires) {
				found = append(found, kv{k, clone(e.value)})
			}
		}
		sh.mu.Unlock()
		for _, f := range found {
			if err := fn(f.k, f.v); err != nil {
				return err
			}
		}
	}
	return nil
}

// clone copies b, so that a caller never shares a slice with the store.
func clone(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return append(make([]byte, 0, len(b)), b...)
}
