package mcpauth

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"
)

// APIKeyStoreOptions configures [APIKeys.UseStore]. The zero value, or nil,
// is the default for every field.
type APIKeyStoreOptions struct {
	// CacheTTL is how long an answer of the store is remembered: a key it
	// holds, or that it holds no such key. It is the bound on how late a
	// change made through another APIKeys on the same store (another
	// replica) takes effect here: a key deleted there stops working here, and
	// a key created there that was presented here before it existed starts
	// working here, within CacheTTL. Changes made through this APIKeys take
	// effect at once. Zero (the default) means 5 seconds; a negative value
	// turns the caches off, so that every request reads the store.
	CacheTTL time.Duration
	// CacheSize bounds how many keys are remembered, and, apart from them,
	// how many unknown keys, so that a flood of unknown keys cannot push out
	// the known ones. Zero (the default) means 10000 of each; at most
	// 4194304.
	CacheSize int
	// Timeout bounds each call to the store. Zero (the default) means 2
	// seconds.
	Timeout time.Duration
	// Events receives key management ([EventKeyManagement]) and store
	// faults ([EventKeySource]). Nil (the default) means [LogEvents] on
	// Logger.
	Events EventSink
	// Logger is where the default event sink writes. Nil (the default)
	// means slog.Default(). It is not used when Events is set.
	Logger *slog.Logger
	// Clock returns the current time, for the caches and the stored keys'
	// expiry. Nil (the default) means time.Now.
	Clock func() time.Time
}

const (
	defaultKeyCacheTTL   = 5 * time.Second
	defaultKeyCacheSize  = 10000
	maxKeyCacheSize      = 1 << 22
	defaultStoreTimeout  = 2 * time.Second
	maxStoredKeyRecord   = 16 << 10
	storeRetryAfter      = time.Second
	storedKeyKind        = "apikey:"
	minKeyIDLen          = 12 // hex digits of a key ID (see apiKeyID)
	reasonAPIKeysCreated = "created"
	reasonAPIKeysDeleted = "deleted"
	reasonAPIKeysRevoked = "revoked"
)

// errKeyStoreDown refuses a request whose key had to be read from a store
// that did not answer: 503, never a pass.
var errKeyStoreDown error = &errorClass{msg: "mcpauth: API key store unavailable", reason: reasonAPIKeysDown, desc: "Authentication is temporarily unavailable.", parent: ErrUnavailable}

// keyStore is the run-time-managed part of an APIKeys: keys in a Store,
// behind a positive and a negative cache.
type keyStore struct {
	store   Store
	ttl     time.Duration // <= 0: no caching
	timeout time.Duration
	events  EventSink
	now     func() time.Time
	pos     *hashCache[*keyEntry]
	neg     *hashCache[struct{}]
	// gen counts the creations and deletions made through this APIKeys, so
	// that an answer read before one of them is not cached after it.
	gen    atomic.Uint64
	flight flights[*keyEntry]
}

// storedKey is the record of a key in the store, under "apikey:" and the
// hex SHA-256 of the key; the key itself is never stored.
type storedKey struct {
	Subject   string    `json:"sub,omitempty"`
	Roles     []string  `json:"roles,omitempty"`
	Scopes    []string  `json:"scopes,omitempty"`
	ExpiresAt time.Time `json:"exp,omitzero"`
}

func storedKeyName(sum *[32]byte) string { return storedKeyKind + hex.EncodeToString(sum[:]) }

// UseStore makes k also accept the keys held in st, which [APIKeys.Create],
// [APIKeys.Delete] and [APIKeys.List] manage while the server runs. Keys
// configured in code or in MCP_API_KEYS keep working as before and are
// looked up first; a key found in neither is refused with 401.
//
// Only a key's SHA-256 and its subject, roles, scopes and expiry are
// stored, under "apikey:<hex SHA-256>", with the store's expiry set to the
// key's. A request does not read the store each time: what it answered is
// remembered for CacheTTL (see [APIKeyStoreOptions]), and several requests
// waiting for the same key share one read. When the store does not answer
// within Timeout, the request is refused with 503 and Retry-After, never
// let through, and the next request tries the store again.
//
// Call UseStore once, before k serves requests; it returns an error for a
// nil store, for bad options, or if k has a store already.
func (k *APIKeys) UseStore(st Store, opts *APIKeyStoreOptions) error {
	if st == nil {
		return errors.New("mcpauth: UseStore needs a store")
	}
	var o APIKeyStoreOptions
	if opts != nil {
		o = *opts
	}
	switch {
	case o.CacheSize < 0 || o.CacheSize > maxKeyCacheSize:
		return fmt.Errorf("mcpauth: APIKeyStoreOptions.CacheSize must be between 0 and %d", maxKeyCacheSize)
	case o.Timeout < 0:
		return errors.New("mcpauth: APIKeyStoreOptions.Timeout is negative")
	}
	ks := &keyStore{
		store:   st,
		ttl:     o.CacheTTL,
		timeout: o.Timeout,
		events:  sinkFor(o.Events, o.Logger),
		now:     o.Clock,
	}
	if ks.ttl == 0 {
		ks.ttl = defaultKeyCacheTTL
	}
	if ks.timeout == 0 {
		ks.timeout = defaultStoreTimeout
	}
	if ks.now == nil {
		ks.now = time.Now
	}
	if ks.ttl > 0 {
		size := o.CacheSize
		if size == 0 {
			size = defaultKeyCacheSize
		}
		ks.pos = newHashCache[*keyEntry](size)
		ks.neg = newHashCache[struct{}](size)
	}
	if !k.store.CompareAndSwap(nil, ks) {
		return errors.New("mcpauth: UseStore: the APIKeys has a store already")
	}
	return nil
}

// lookup returns the stored key whose hash is sum, nil if the store holds
// none, or an error that refuses the request with 503.
func (ks *keyStore) lookup(ctx context.Context, sum *[32]byte) (*keyEntry, error) {
	now := ks.now().UnixNano()
	if ks.pos != nil {
		if e, ok := ks.pos.get(sum, now); ok {
			return e, nil
		}
		if _, ok := ks.neg.get(sum, now); ok {
			return nil, nil
		}
	}
	gen := ks.gen.Load()
	e, err := ks.flight.do(sum, gen, ctx.Done(), func() (*keyEntry, error) { return ks.fetch(ctx, sum, gen) })
	if err != nil {
		return nil, &refusal{method: MethodAPIKey, class: errKeyStoreDown, keyID: keyID(sum),
			detail: "API key store unavailable", retryAfter: storeRetryAfter}
	}
	return e, nil
}

// fetch reads the key from the store and caches the answer. A fault is
// reported and not cached: the next request asks the store again.
func (ks *keyStore) fetch(ctx context.Context, sum *[32]byte, gen uint64) (*keyEntry, error) {
	// A read that ended between this request's look at the caches and its
	// call here has left its answer there.
	if ks.pos != nil {
		now := ks.now().UnixNano()
		if e, ok := ks.pos.get(sum, now); ok {
			return e, nil
		}
		if _, ok := ks.neg.get(sum, now); ok {
			return nil, nil
		}
	}
	// The read serves every request waiting for it, so one request ending
	// must not cancel it; Timeout bounds it.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ks.timeout)
	defer cancel()
	// Cache entries count from before the read: an answer read just before
	// a deletion on another replica then lasts at most CacheTTL after it,
	// however long the read took.
	now := ks.now()
	b, err := ks.store.Get(cctx, storedKeyName(sum))
	if errors.Is(err, ErrNotFound) {
		if ks.neg != nil {
			ks.neg.putIf(sum, struct{}{}, now.Add(ks.ttl).UnixNano(), now.UnixNano(), &ks.gen, gen)
		}
		return nil, nil
	}
	var e *keyEntry
	if err == nil {
		if e, err = decodeStoredKey(sum, b); err == nil {
			// Set before the principal is shared (see credentialState).
			e.principal.state = &storedKeyState{ks: ks, e: e}
		}
	}
	if err != nil {
		detail := "API key store unavailable"
		if errors.Is(err, errBadStoredKey) {
			detail = "bad API key record"
		}
		emit(ctx, ks.events, Event{Kind: EventKeySource, Outcome: OutcomeFailure, Reason: reasonAPIKeysDown,
			Method: MethodAPIKey, KeyID: keyID(sum), Detail: detail})
		return nil, err
	}
	if ks.pos != nil {
		until := now.Add(ks.ttl)
		if !e.expiresAt.IsZero() && e.expiresAt.Before(until) {
			until = e.expiresAt
		}
		ks.pos.putIf(sum, e, until.UnixNano(), now.UnixNano(), &ks.gen, gen)
	}
	return e, nil
}

// storedKeyState is what an open request of a stored key (a stream) asks
// whether the key has been deleted since it was accepted (see
// credentialState). A deletion through the same APIKeys marks the entry and
// wakes the watchers at once; one through another APIKeys on the store is
// found by the watchers' periodic checks, which go through the cache: a
// stream ends within CacheTTL plus RequireOptions.RevocationCheckInterval
// of the deletion, and checking costs a store read at most once per
// CacheTTL.
type storedKeyState struct {
	ks *keyStore
	e  *keyEntry
}

func (s *storedKeyState) isRevoked(ctx context.Context) (bool, error) {
	if s.e.revoked.Load() {
		return true, nil
	}
	cur, err := s.ks.lookup(ctx, &s.e.hash)
	if err != nil {
		return false, err
	}
	return cur == nil || cur.revoked.Load(), nil
}

func (s *storedKeyState) shared() bool { return true }

var errBadStoredKey = errors.New("mcpauth: bad API key record in the store")

// decodeStoredKey turns a record into a key entry, checking it as
// NewAPIKeys checks a key: a record that would not pass is refused, not
// trusted because it came from the store.
func decodeStoredKey(sum *[32]byte, b []byte) (*keyEntry, error) {
	key, err := decodeStoredRecord(sum, b)
	if err != nil {
		return nil, err
	}
	e, err := newKeyEntry(key)
	if err != nil {
		return nil, errBadStoredKey
	}
	return e, nil
}

// decodeStoredRecord reads a record as the APIKey it was made from, with
// its Hash.
func decodeStoredRecord(sum *[32]byte, b []byte) (APIKey, error) {
	var rec storedKey
	if len(b) > maxStoredKeyRecord || json.Unmarshal(b, &rec) != nil {
		return APIKey{}, errBadStoredKey
	}
	return APIKey{Hash: hex.EncodeToString(sum[:]), Subject: rec.Subject,
		Roles: rec.Roles, Scopes: rec.Scopes, ExpiresAt: rec.ExpiresAt}, nil
}

// Create stores a key in the store of [APIKeys.UseStore] and returns it.
// With key.Key and key.Hash empty it makes a new key ([GenerateAPIKey]):
// what it returns is then the only copy of the secret, since only its hash
// is stored. key.Key, or key.Hash (see [APIKey]), registers a key made
// elsewhere; Create then returns key.Key, or "" for a hash. The subject,
// roles, scopes and expiry are checked as [NewAPIKeys] checks them, and the
// store forgets the key when it expires. A key stored already is an error.
//
// The key works at once through k, and through every other APIKeys on the
// same store at once too, unless it was presented there in the last
// CacheTTL before it existed. Create reports an [EventKeyManagement].
func (k *APIKeys) Create(ctx context.Context, key APIKey) (string, error) {
	ks := k.store.Load()
	if ks == nil {
		return "", errors.New("mcpauth: Create: the APIKeys has no store (see UseStore)")
	}
	if key.Key == "" && key.Hash == "" {
		secret, err := GenerateAPIKey()
		if err != nil {
			return "", err
		}
		key.Key = secret
	}
	e, err := newKeyEntry(key)
	if err != nil {
		return "", fmt.Errorf("mcpauth: API key: %w", err)
	}
	if k.table.get(&e.hash) != nil {
		return "", errors.New("mcpauth: API key: the key is configured in code already")
	}
	var ttl time.Duration
	if !key.ExpiresAt.IsZero() {
		if ttl = key.ExpiresAt.Sub(ks.now()); ttl <= 0 {
			return "", errors.New("mcpauth: API key: ExpiresAt is in the past")
		}
	}
	rec, err := json.Marshal(storedKey{Subject: key.Subject, Roles: key.Roles, Scopes: key.Scopes, ExpiresAt: key.ExpiresAt})
	if err != nil {
		return "", fmt.Errorf("mcpauth: API key: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, ks.timeout)
	defer cancel()
	if err := ks.store.Create(cctx, storedKeyName(&e.hash), rec, ttl); err != nil {
		if errors.Is(err, ErrExists) {
			return "", errors.New("mcpauth: API key: the key is stored already")
		}
		return "", fmt.Errorf("mcpauth: storing an API key: %w", err)
	}
	// A request that presented the key before it existed left a negative
	// entry; the key must work here at once.
	ks.gen.Add(1)
	if ks.neg != nil {
		ks.neg.remove(&e.hash)
	}
	emit(ctx, ks.events, Event{Kind: EventKeyManagement, Outcome: OutcomeSuccess, Method: MethodAPIKey,
		Subject: e.principal.Subject, KeyID: e.principal.KeyID, Detail: reasonAPIKeysCreated})
	return key.Key, nil
}

// Delete removes from the store every key whose hash begins with id: a key
// ID as audit events carry it (12 hex digits), or a whole hash as
// [APIKeys.List] returns it. It returns how many keys it removed. A removed
// key stops working at once through k, for requests in progress too, and
// through every other APIKeys on the same store within its CacheTTL. Each
// removal is reported as an [EventKeyManagement]. Keys configured in code
// are revoked with [APIKeys.RevokeID] instead.
func (k *APIKeys) Delete(ctx context.Context, id string) (int, error) {
	ks := k.store.Load()
	if ks == nil {
		return 0, errors.New("mcpauth: Delete: the APIKeys has no store (see UseStore)")
	}
	id = strings.ToLower(id)
	if len(id) < minKeyIDLen || len(id) > 64 || !isHex(id) {
		return 0, fmt.Errorf("mcpauth: Delete: a key ID is %d to 64 hex digits", minKeyIDLen)
	}
	cctx, cancel := context.WithTimeout(ctx, ks.timeout)
	defer cancel()
	type found struct {
		name    string
		subject string
	}
	var keys []found
	err := ks.store.List(cctx, storedKeyKind+id, func(name string, b []byte) error {
		f := found{name: name}
		if sum, ok := parseStoredKeyName(name); ok {
			// For the event only: a bad record is deleted all the same.
			if rec, err := decodeStoredRecord(&sum, b); err == nil {
				f.subject = rec.Subject
			}
		}
		keys = append(keys, f)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("mcpauth: listing API keys: %w", err)
	}
	n := 0
	defer func() {
		if n > 0 {
			notifyRevoked() // streams of the deleted keys end
		}
	}()
	for _, f := range keys {
		sum, ok := parseStoredKeyName(f.name)
		if !ok {
			continue
		}
		if err := ks.store.Delete(cctx, f.name); err != nil {
			return n, fmt.Errorf("mcpauth: deleting an API key: %w", err)
		}
		n++
		ks.gen.Add(1)
		if ks.pos != nil {
			if e, ok := ks.pos.remove(&sum); ok {
				e.revoked.Store(true)
			}
		}
		emit(ctx, ks.events, Event{Kind: EventKeyManagement, Outcome: OutcomeSuccess, Method: MethodAPIKey,
			Subject: f.subject, KeyID: keyID(&sum), Detail: reasonAPIKeysDeleted})
	}
	return n, nil
}

// List returns the keys held in the store, each with its Hash (never a
// secret: the store has none), Subject, Roles, Scopes and ExpiresAt, in no
// particular order. The first 12 hex digits of Hash are the key ID that
// audit events carry.
func (k *APIKeys) List(ctx context.Context) ([]APIKey, error) {
	ks := k.store.Load()
	if ks == nil {
		return nil, errors.New("mcpauth: List: the APIKeys has no store (see UseStore)")
	}
	cctx, cancel := context.WithTimeout(ctx, ks.timeout)
	defer cancel()
	var keys []APIKey
	err := ks.store.List(cctx, storedKeyKind, func(name string, b []byte) error {
		sum, ok := parseStoredKeyName(name)
		if !ok {
			return nil
		}
		// Checked as a request would check it, so that List shows what
		// requests see.
		if _, err := decodeStoredKey(&sum, b); err != nil {
			return fmt.Errorf("mcpauth: stored API key %s: %w", keyID(&sum), err)
		}
		key, _ := decodeStoredRecord(&sum, b)
		keys = append(keys, key)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("mcpauth: listing API keys: %w", err)
	}
	return keys, nil
}

func parseStoredKeyName(name string) (sum [32]byte, ok bool) {
	h, found := strings.CutPrefix(name, storedKeyKind)
	if !found || len(h) != 64 || !isHex(h) {
		return sum, false
	}
	_, err := hex.Decode(sum[:], []byte(h))
	return sum, err == nil
}

// isHex reports whether s is lower-case hex digits only.
func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
