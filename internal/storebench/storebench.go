// Package storebench measures each method of a [mcpauth.Store] the same
// way for every backend, so that the backends' benchmarks can be set side
// by side (docs/stores.md).
package storebench

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mcpauth/mcpauth"
)

// batch is how many keys a benchmark that consumes keys (Create, Take)
// prepares at a time with the timer stopped: stopping the timer costs a
// few microseconds, so it is paid once per batch, not per operation.
const batch = 1000

// Run runs one sub-benchmark per operation on the store newStore returns.
// Each gets a fresh store.
func Run(b *testing.B, newStore func(b *testing.B) mcpauth.Store) {
	ctx := context.Background()
	value := []byte(`{"client_id":"bench","scope":"tools:read","expires":1767225600}`)
	b.Run("GetHit", func(b *testing.B) {
		s := newStore(b)
		must(b, s.Set(ctx, "bench:hit", value, time.Hour))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Get(ctx, "bench:hit"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("GetMiss", func(b *testing.B) {
		s := newStore(b)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Get(ctx, "bench:miss"); err != mcpauth.ErrNotFound {
				b.Fatal(err)
			}
		}
	})
	b.Run("Set", func(b *testing.B) {
		s := newStore(b)
		b.ReportAllocs()
		for b.Loop() {
			must(b, s.Set(ctx, "bench:set", value, time.Hour))
		}
	})
	b.Run("Create", func(b *testing.B) {
		s := newStore(b)
		keys := keySource{prefix: "bench:create:", left: b.N}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			must(b, s.Create(ctx, keys.next(b, nil), value, time.Hour))
		}
	})
	b.Run("Take", func(b *testing.B) {
		s := newStore(b)
		keys := keySource{prefix: "bench:take:", left: b.N}
		fill := func(k string) { must(b, s.Set(ctx, k, value, time.Hour)) }
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := s.Take(ctx, keys.next(b, fill)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Incr", func(b *testing.B) {
		s := newStore(b)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Incr(ctx, "bench:incr", time.Hour); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// keySource hands out fresh keys, made (and, with fill, stored) a batch at
// a time with the timer stopped; never more than the left that the
// benchmark will use, so that one iteration costs one key.
type keySource struct {
	prefix string
	left   int
	keys   []string
	made   int
}

func (ks *keySource) next(b *testing.B, fill func(key string)) string {
	if len(ks.keys) == 0 {
		b.StopTimer()
		ks.keys = make([]string, min(batch, max(ks.left, 1)))
		ks.left -= len(ks.keys)
		for i := range ks.keys {
			ks.keys[i] = fmt.Sprintf("%s%d", ks.prefix, ks.made)
			ks.made++
			if fill != nil {
				fill(ks.keys[i])
			}
		}
		b.StartTimer()
	}
	k := ks.keys[0]
	ks.keys = ks.keys[1:]
	return k
}

func must(b *testing.B, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}
