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

// BenchmarkRefreshRotation is one refresh_token request to the
// authorization server's token endpoint (take the token, store the new
// one, save the family, mark the old one used) on bbolt and on Redis,
// each beside the same on the memory store in alternating batches of the
// same run: rotations/s of each, and the ratio (times slower than memory).
func BenchmarkRefreshRotation(b *testing.B) {
	b.Run("bolt", func(b *testing.B) {
		s, err := bolt.Open(filepath.Join(b.TempDir(), "bench.db"), nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = s.Close() })
		storebench.Rotations(b, s)
	})
	b.Run("redis", func(b *testing.B) {
		srv := testredis.Start(b)
		storebench.Rotations(b, newTestStore(b, srv, Options{}))
	})
}
