package redis

import (
	"path/filepath"
	"testing"

	"github.com/mcpauth/mcpauth"
	"github.com/mcpauth/mcpauth/internal/storebench"
	"github.com/mcpauth/mcpauth/internal/testredis"
	"github.com/mcpauth/mcpauth/store/bolt"
)

// BenchmarkStores measures each operation on the three backends in one
// run: memory, bbolt (a file in a temporary directory, fsync'd on every
// write) and Redis (a local redis-server over loopback TCP).
func BenchmarkStores(b *testing.B) {
	b.Run("memory", func(b *testing.B) {
		storebench.Run(b, func(*testing.B) mcpauth.Store { return mcpauth.NewMemoryStore() })
	})
	b.Run("bolt", func(b *testing.B) {
		storebench.Run(b, func(b *testing.B) mcpauth.Store {
			s, err := bolt.Open(filepath.Join(b.TempDir(), "bench.db"), nil)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = s.Close() })
			return s
		})
	})
	b.Run("redis", func(b *testing.B) {
		srv := testredis.Start(b)
		storebench.Run(b, func(b *testing.B) mcpauth.Store { return newTestStore(b, srv, Options{}) })
	})
}
