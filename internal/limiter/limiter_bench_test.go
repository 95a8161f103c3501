package limiter

import (
	"strconv"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// BenchmarkTake measures one allowed Take: a hot key (one caller calling one
// limited tool), many keys of one caller (a caller with many limited tools),
// many callers from parallel goroutines, and a churn of new keys into a full
// map, each insertion evicting one.
func BenchmarkTake(b *testing.B) {
	lim := rate.Limit(1e9) // never reached
	b.Run("hot", func(b *testing.B) {
		m := New(65536, nil)
		k := Key{Rule: 1, ID: "apikey:bench"}
		b.ReportAllocs()
		for b.Loop() {
			if ok, _ := m.Take(k, lim, 1e9); !ok {
				b.Fatal("refused")
			}
		}
	})
	b.Run("one-caller-100-rules", func(b *testing.B) {
		m := New(65536, nil)
		keys := make([]Key, 100)
		for i := range keys {
			keys[i] = Key{Rule: i, ID: "apikey:bench"}
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if ok, _ := m.Take(keys[i%len(keys)], lim, 1e9); !ok {
				b.Fatal("refused")
			}
			i++
		}
	})
	b.Run("parallel-1000-callers", func(b *testing.B) {
		m := New(65536, nil)
		keys := make([]Key, 1000)
		for i := range keys {
			keys[i] = Key{Rule: 1, ID: "apikey:caller-" + strconv.Itoa(i)}
		}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if ok, _ := m.Take(keys[i%len(keys)], lim, 1e9); !ok {
					b.Error("refused")
					return
				}
				i += 7
			}
		})
	})
	b.Run("churn-full-map", func(b *testing.B) {
		// Every Take is a new key into a full map of buckets still
		// refilling: each evicts one.
		const capacity = 4096
		m := New(capacity, nil)
		slow := rate.Every(time.Hour)
		keys := make([]Key, 4*capacity)
		for i := range keys {
			keys[i] = Key{Rule: 1, ID: "apikey:caller-" + strconv.Itoa(i)}
		}
		for i := range capacity {
			m.Take(keys[i], slow, 10)
		}
		b.ReportAllocs()
		i := capacity
		for b.Loop() {
			m.Take(keys[i%len(keys)], slow, 10)
			i++
		}
	})
}
