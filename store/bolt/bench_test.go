package bolt

import (
	"path/filepath"
	"testing"

	"github.com/mcpauth/mcpauth"
	"github.com/mcpauth/mcpauth/internal/storebench"
)

// BenchmarkStore measures each operation on a bbolt file, beside the
// memory store as the baseline of the same run. store/redis's
// BenchmarkStores sets all three backends side by side.
func BenchmarkStore(b *testing.B) {
	b.Run("memory", func(b *testing.B) {
		storebench.Run(b, func(*testing.B) mcpauth.Store { return mcpauth.NewMemoryStore() })
	})
	b.Run("bolt", func(b *testing.B) {
		storebench.Run(b, func(b *testing.B) mcpauth.Store {
			s, err := Open(filepath.Join(b.TempDir(), "bench.db"), nil)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = s.Close() })
			return s
		})
	})
}
