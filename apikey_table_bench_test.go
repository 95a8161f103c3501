package mcpauth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/mcpauth/mcpauth/internal/benchcmp"
	"github.com/mcpauth/mcpauth/internal/header"
)

// cowTable is the key table as it was before the sharded one: a map
// replaced by a copy on every Add, read without a lock. It is the baseline
// of the table benchmarks.
type cowTable struct {
	mu    sync.Mutex
	table atomic.Pointer[map[[32]byte]*keyEntry]
}

// add is the former APIKeys.Add.
func (c *cowTable) add(key APIKey) error {
	e, err := newKeyEntry(key)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := *c.table.Load()
	if _, dup := old[e.hash]; dup {
		return errors.New("duplicate")
	}
	table := make(map[[32]byte]*keyEntry, len(old)+1)
	for h, v := range old {
		table[h] = v
	}
	table[e.hash] = e
	c.table.Store(&table)
	return nil
}

func (c *cowTable) get(sum *[32]byte) *keyEntry { return (*c.table.Load())[*sum] }

// million is one million keys, in the sharded table (an APIKeys) and in
// the copy-on-write one, sharing their entries; built once, as it takes a
// few seconds.
var million = sync.OnceValues(func() (*APIKeys, *cowTable) {
	const n = 1_000_000
	k, _ := NewAPIKeys()
	k.table.init(n)
	cow := &cowTable{}
	m := make(map[[32]byte]*keyEntry, n)
	for range n {
		e, err := newKeyEntry(APIKey{Hash: randomHash()})
		if err != nil {
			panic(err)
		}
		k.table.add(e)
		m[e.hash] = e
	}
	cow.table.Store(&m)
	return k, cow
})

func randomHash() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// freshHashes returns a source of new key hashes, made a thousand at a time
// with the timer stopped, so that stopping it is paid once per batch.
func freshHashes(b *testing.B) func() string {
	var batch []string
	return func() string {
		if len(batch) == 0 {
			b.StopTimer()
			batch = make([]string, 1000)
			for i := range batch {
				batch[i] = randomHash()
			}
			b.StartTimer()
		}
		h := batch[0]
		batch = batch[1:]
		return h
	}
}

// BenchmarkAPIKeysAdd adds one key to a table of a million: the sharded
// table of APIKeys.Add against the copy-on-write table it replaced, in the
// same run. Each op adds a fresh key (a hash, as a configuration without
// secrets would); the keys added are removed again at the end.
func BenchmarkAPIKeysAdd(b *testing.B) {
	k, cow := million()
	b.Run("sharded/keys=1M", func(b *testing.B) {
		next := freshHashes(b)
		var added []string
		b.ReportAllocs()
		for b.Loop() {
			h := next()
			if err := k.Add(APIKey{Hash: h}); err != nil {
				b.Fatal(err)
			}
			added = append(added, h)
		}
		// Back to a million, for the next run and the next benchmark.
		b.StopTimer()
		for _, h := range added {
			var sum [32]byte
			_, _ = hex.Decode(sum[:], []byte(h))
			s := k.table.shard(&sum)
			s.mu.Lock()
			delete(s.m, sum)
			s.mu.Unlock()
		}
	})
	b.Run("copy-on-write/keys=1M", func(b *testing.B) {
		next := freshHashes(b)
		orig := cow.table.Load()
		b.ReportAllocs()
		for b.Loop() {
			if err := cow.add(APIKey{Hash: next()}); err != nil {
				b.Fatal(err)
			}
		}
		cow.table.Store(orig)
	})
}

// BenchmarkAPIKeysLookupRatio measures what a lookup in the table costs
// (the part of Authenticate that the sharded table changed: a read lock
// around the map probe), against the lock-free copy-on-write table,
// interleaved, at a million keys.
func BenchmarkAPIKeysLookupRatio(b *testing.B) {
	k, cow := million()
	var sums [64][32]byte
	i := 0
	k.table.each(func(e *keyEntry) {
		if i < len(sums) {
			sums[i] = e.hash
			i++
		}
	})
	var hits int
	j := 0
	b.ReportAllocs()
	benchcmp.Interleave(b, 1000,
		func() {
			if k.table.get(&sums[j%len(sums)]) != nil {
				hits++
			}
			j++
		},
		func() {
			if cow.get(&sums[j%len(sums)]) != nil {
				hits++
			}
			j++
		})
	if hits == 0 {
		b.Fatal("no lookup found its key")
	}
}

// authenticate is APIKeys.Authenticate as it was with the copy-on-write
// table, line for line, as the baseline of BenchmarkAPIKeysAuthenticateRatio.
func (c *cowTable) authenticate(r *http.Request, now func() time.Time) (*Principal, error) {
	key, present, ok := header.Single(r.Header, header.APIKey)
	if present && !ok {
		return nil, failure(MethodAPIKey, ErrMalformed, "", "bad X-API-Key header")
	}
	if !present {
		token, _, ok, _, jwt := header.BearerJWT(r.Header)
		if !ok || jwt {
			return nil, ErrNoCredentials
		}
		key = token
	}
	if strings.HasPrefix(key, APIKeyPrefix) && !validChecksum(key) {
		return nil, failure(MethodAPIKey, ErrMalformed, "", "bad checksum")
	}
	sum := sha256.Sum256(unsafe.Slice(unsafe.StringData(key), len(key)))
	e := (*c.table.Load())[sum]
	if e == nil || subtle.ConstantTimeCompare(e.hash[:], sum[:]) != 1 {
		return nil, failure(MethodAPIKey, ErrInvalidCredentials, keyID(&sum), "unknown key")
	}
	if e.revoked.Load() {
		return nil, failure(MethodAPIKey, ErrRevoked, e.principal.KeyID, "")
	}
	if !e.expiresAt.IsZero() && !now().Before(e.expiresAt) {
		return nil, failure(MethodAPIKey, ErrExpired, e.principal.KeyID, "")
	}
	return e.principal, nil
}

// BenchmarkAPIKeysAuthenticateRatio is Authenticate at a million keys,
// with the sharded table, against the former Authenticate on the
// copy-on-write table, interleaved in one run; both for a generated key
// sent as X-API-Key that both tables hold.
func BenchmarkAPIKeysAuthenticateRatio(b *testing.B) {
	k, cow := million()
	key, _ := GenerateAPIKey()
	if err := k.Add(APIKey{Key: key}); err != nil {
		b.Fatal(err)
	}
	if err := cow.add(APIKey{Key: key}); err != nil {
		b.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	r.Header.Set("X-API-Key", key)
	var fails int
	b.ReportAllocs()
	benchcmp.Interleave(b, 200,
		func() {
			if _, err := k.Authenticate(r); err != nil {
				fails++
			}
		},
		func() {
			if _, err := cow.authenticate(r, time.Now); err != nil {
				fails++
			}
		})
	if fails != 0 {
		b.Fatalf("%d requests refused", fails)
	}
}
