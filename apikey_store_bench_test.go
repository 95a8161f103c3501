package mcpauth_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/mcpauth/mcpauth"
	"github.com/mcpauth/mcpauth/internal/benchcmp"
	"github.com/mcpauth/mcpauth/internal/testredis"
	"github.com/mcpauth/mcpauth/store/bolt"
	"github.com/mcpauth/mcpauth/store/redis"
)

// benchStores are the backends of the stored-key benchmarks: memory, bbolt
// (a file in a temporary directory) and a local redis-server over loopback.
var benchStores = []struct {
	name string
	open func(b *testing.B) mcpauth.Store
}{
	{"memory", func(*testing.B) mcpauth.Store { return mcpauth.NewMemoryStore() }},
	{"bolt", func(b *testing.B) mcpauth.Store {
		st, err := bolt.Open(filepath.Join(b.TempDir(), "bench.db"), nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = st.Close() })
		return st
	}},
	{"redis", func(b *testing.B) mcpauth.Store {
		srv := testredis.Start(b)
		st, err := redis.Open(srv.URL(), nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = st.Close() })
		return st
	}},
}

// newStoredKeys returns an APIKeys with one key, with a subject and a
// role, in st, and the key. miss turns the caches off, so that every
// request reads the store.
func newStoredKeys(b *testing.B, st mcpauth.Store, miss bool) (*mcpauth.APIKeys, string) {
	b.Helper()
	var opts *mcpauth.APIKeyStoreOptions
	if miss {
		opts = &mcpauth.APIKeyStoreOptions{CacheTTL: -1}
	}
	k := storedKeys(b, st, opts)
	key, err := k.Create(context.Background(), mcpauth.APIKey{Subject: "user", Roles: []string{"editor"}})
	if err != nil {
		b.Fatal(err)
	}
	// A benchmark of refusals would measure the wrong path.
	w := httptest.NewRecorder()
	mcpauth.Require(quietLog, k)(next).ServeHTTP(w, request("X-API-Key", key))
	if w.Code != http.StatusOK {
		b.Fatalf("the stored key is refused: %d", w.Code)
	}
	return k, key
}

// BenchmarkStoredAPIKey sends one accepted request through Require with a
// key held in a store: from the cache (hit), and with the caches off, so
// that every request reads the store (miss); beside the same request with
// the key configured in code (in-memory), in the same run.
func BenchmarkStoredAPIKey(b *testing.B) {
	static, _ := mcpauth.GenerateAPIKey()
	inMemory, _ := mcpauth.NewAPIKeys(mcpauth.APIKey{Key: static, Subject: "user", Roles: []string{"editor"}})
	b.Run("in-memory", func(b *testing.B) {
		serve(b, mcpauth.Require(quietLog, inMemory)(next), request("X-API-Key", static), true)
	})
	for _, s := range benchStores {
		for _, miss := range []bool{false, true} {
			name := "hit/" + s.name
			if miss {
				name = "miss/" + s.name
			}
			b.Run(name, func(b *testing.B) {
				k, key := newStoredKeys(b, s.open(b), miss)
				serve(b, mcpauth.Require(quietLog, k)(next), request("X-API-Key", key), true)
			})
		}
	}
}

// BenchmarkStoredAPIKeyRatio is BenchmarkStoredAPIKey interleaved with its
// baseline, the key configured in code, so that the ratio does not depend
// on the machine's load.
func BenchmarkStoredAPIKeyRatio(b *testing.B) {
	static, _ := mcpauth.GenerateAPIKey()
	inMemory, _ := mcpauth.NewAPIKeys(mcpauth.APIKey{Key: static, Subject: "user", Roles: []string{"editor"}})
	base, rBase := mcpauth.Require(quietLog, inMemory)(next), request("X-API-Key", static)
	for _, s := range benchStores {
		for _, miss := range []bool{false, true} {
			name := "hit/" + s.name
			if miss {
				name = "miss/" + s.name
			}
			b.Run(name+"-vs-in-memory", func(b *testing.B) {
				k, key := newStoredKeys(b, s.open(b), miss)
				batch := 200
				if miss && s.name != "memory" {
					batch = 20
				}
				w := benchcmp.NewDiscardWriter()
				ours, rOurs := mcpauth.Require(quietLog, k)(next), request("X-API-Key", key)
				benchcmp.Interleave(b, batch,
					func() { w.Reset(); ours.ServeHTTP(w, rOurs) },
					func() { w.Reset(); base.ServeHTTP(w, rBase) })
			})
		}
	}
}
