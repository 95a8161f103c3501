package limiter

import (
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func TestTake(t *testing.T) {
	c := &clock{t: time.Unix(1_000_000, 0)}
	m := New(1024, c.now)
	perMin := rate.Every(time.Minute / 10) // 10 per minute
	k := Key{Rule: 1, ID: "alice"}
	for i := range 10 {
		if ok, _ := m.Take(k, perMin, 10); !ok {
			t.Fatalf("take %d refused within the burst", i+1)
		}
	}
	ok, retry := m.Take(k, perMin, 10)
	if ok {
		t.Fatal("11th take allowed")
	}
	if retry <= 0 || retry > 6*time.Second {
		t.Errorf("retryAfter = %v, want in (0, 6s]", retry)
	}
	// Another caller, and the same caller under another rule, have their
	// own buckets.
	if ok, _ := m.Take(Key{Rule: 1, ID: "bob"}, perMin, 10); !ok {
		t.Error("bob refused")
	}
	if ok, _ := m.Take(Key{Rule: 2, ID: "alice"}, perMin, 10); !ok {
		t.Error("alice refused under another rule")
	}
	// A refused take consumes nothing: after retryAfter one token is there.
	c.add(retry)
	if ok, _ := m.Take(k, perMin, 10); !ok {
		t.Error("refused after waiting retryAfter")
	}
	if ok, _ := m.Take(k, perMin, 10); ok {
		t.Error("second take after one refill allowed")
	}
}

func TestIdleEviction(t *testing.T) {
	c := &clock{t: time.Unix(1_000_000, 0)}
	m := New(1<<16, c.now)
	lim := rate.Every(time.Second)
	for i := range 64 {
		m.Take(Key{ID: "old" + strconv.Itoa(i)}, lim, 5)
	}
	// Drain one bucket, to check below that eviction happens only once it
	// has refilled.
	for range 5 {
		m.Take(Key{ID: "old0"}, lim, 5)
	}
	if m.Len() != 64 {
		t.Fatalf("Len = %d, want 64", m.Len())
	}
	// After a full refill (5s) every limiter is as good as new: the next
	// insertion into its shard drops it.
	c.add(5 * time.Second)
	for i := range 1000 {
		m.Take(Key{ID: "new" + strconv.Itoa(i)}, lim, 5)
	}
	if got := m.Len(); got != 1000 {
		t.Errorf("Len = %d after the idle limiters refilled, want 1000", got)
	}
	// Evicting a refilled limiter changes nothing its key can see: a full
	// bucket.
	for i := range 5 {
		if ok, _ := m.Take(Key{ID: "old0"}, lim, 5); !ok {
			t.Fatalf("take %d after idle eviction refused", i+1)
		}
	}
	if ok, _ := m.Take(Key{ID: "old0"}, lim, 5); ok {
		t.Error("6th take allowed")
	}
}

func TestCapEvictsLeastRecentlyUsed(t *testing.T) {
	c := &clock{t: time.Unix(1_000_000, 0)}
	m := New(shards, c.now) // one per shard
	lim := rate.Every(time.Hour)
	for i := range 500 {
		m.Take(Key{ID: strconv.Itoa(i)}, lim, 1)
		if m.Len() > m.Cap() {
			t.Fatalf("Len %d > Cap %d after %d keys", m.Len(), m.Cap(), i+1)
		}
	}
	if m.Cap() != shards {
		t.Errorf("Cap = %d, want %d", m.Cap(), shards)
	}
}

// TestMillionPrincipals shows that a flood of distinct callers cannot grow
// the map, or the heap, past the cap.
func TestMillionPrincipals(t *testing.T) {
	n := 1_000_000
	if testing.Short() {
		n = 100_000
	}
	const capacity = 10_000
	m := New(capacity, nil)
	lim := rate.Every(time.Minute / 100)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var wg sync.WaitGroup
	const workers = 4
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 0, 32)
			for i := w; i < n; i += workers {
				buf = strconv.AppendInt(append(buf[:0], "principal-"...), int64(i), 10)
				m.Take(Key{Rule: 1, ID: string(buf)}, lim, 100)
			}
		}()
	}
	wg.Wait()
	if got := m.Len(); got > m.Cap() || m.Cap() > capacity {
		t.Fatalf("Len = %d, Cap = %d, want <= %d", got, m.Cap(), capacity)
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	// 10,000 limiters take about 2.5 MB; a million would take about 250 MB.
	if grew > 16<<20 {
		t.Errorf("heap grew by %d MB for %d principals with a cap of %d", grew>>20, n, capacity)
	}
	t.Logf("%d principals: %d limiters held, heap grew %d KB", n, m.Len(), grew>>10)
}

func TestConcurrentSameKey(t *testing.T) {
	m := New(1024, nil)
	lim := rate.Every(time.Hour) // no refill during the test
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if ok, _ := m.Take(Key{ID: "shared"}, lim, 50); ok {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if allowed != 50 {
		t.Errorf("allowed %d of 800 takes from a bucket of 50", allowed)
	}
}

// drain takes the one token of a 1/h bucket of burst 1 for k, and checks
// that a second take is refused.
func drain(t *testing.T, m *Map, k Key) {
	t.Helper()
	hourly := rate.Every(time.Hour)
	if ok, _ := m.Take(k, hourly, 1); !ok {
		t.Fatalf("%v: first take refused", k)
	}
	if ok, _ := m.Take(k, hourly, 1); ok {
		t.Fatalf("%v: second take allowed", k)
	}
}

// refused reports whether k's 1/h bucket is (still) empty.
func refused(m *Map, k Key) bool {
	ok, _ := m.Take(k, rate.Every(time.Hour), 1)
	return !ok
}

// TestOneCallerCannotEvictOwnBucket: the map was sharded by caller alone,
// each shard with capacity/32 entries, so a caller calling more limited
// rules than that pushed its own exhausted bucket out, and it came back
// full. A caller's buckets now take room from the whole map.
func TestOneCallerCannotEvictOwnBucket(t *testing.T) {
	c := &clock{t: time.Unix(1_000_000, 0)}
	m := New(64, c.now)
	once := Key{Rule: 0, ID: "apikey:mallory"}
	drain(t, m, once)
	for round := range 5 {
		for rule := 1; rule < 64; rule++ {
			c.add(time.Millisecond)
			m.Take(Key{Rule: rule, ID: "apikey:mallory"}, rate.Every(time.Hour), 10)
		}
		if !refused(m, once) {
			t.Fatalf("round %d: the exhausted bucket was evicted by the caller's own others (Len %d of %d)", round+1, m.Len(), m.Cap())
		}
	}
	if m.Len() != 64 {
		t.Errorf("Len = %d, want 64", m.Len())
	}
}

// TestEvictsOnlyWhenFull: up to its capacity the map evicts nothing, however
// the keys fall on its shards.
func TestEvictsOnlyWhenFull(t *testing.T) {
	for _, capacity := range []int{1, 31, 64, 1000} {
		c := &clock{t: time.Unix(1_000_000, 0)}
		m := New(capacity, c.now)
		if m.Cap() != capacity {
			t.Errorf("capacity %d: Cap = %d", capacity, m.Cap())
		}
		var keys []Key
		for i := range capacity {
			k := Key{Rule: i % 7, ID: "caller-" + strconv.Itoa(i/7)}
			keys = append(keys, k)
			c.add(time.Millisecond)
			drain(t, m, k)
		}
		evicted := 0
		for _, k := range keys {
			if !refused(m, k) {
				evicted++
			}
		}
		if evicted > 0 {
			t.Errorf("capacity %d: %d buckets evicted before the map was full", capacity, evicted)
		}
		if m.Len() != capacity {
			t.Errorf("capacity %d: Len = %d", capacity, m.Len())
		}
	}
}

// TestFullMapEvictsFullBucketsFirst: once the map is full, a new key evicts
// a bucket that has refilled (which loses nothing) before any other, even
// the least recently used; and otherwise the bucket that will be full
// soonest, which among buckets of one rate is the least recently used one,
// map-wide.
func TestFullMapEvictsFullBucketsFirst(t *testing.T) {
	c := &clock{t: time.Unix(1_000_000, 0)}
	const capacity = 64
	m := New(capacity, c.now)
	oldest := Key{Rule: 1, ID: "oldest"}
	drain(t, m, oldest)
	var others []Key
	for i := range capacity - 2 {
		c.add(time.Millisecond)
		k := Key{Rule: 1, ID: "other-" + strconv.Itoa(i)}
		others = append(others, k)
		drain(t, m, k)
	}
	// The most recently used bucket refills in a second.
	fast := Key{Rule: 2, ID: "fast"}
	c.add(time.Millisecond)
	if ok, _ := m.Take(fast, rate.Every(time.Second), 1); !ok {
		t.Fatal("fast refused")
	}
	c.add(2 * time.Second)
	// The map is full: this evicts fast, which has refilled.
	c.add(time.Millisecond)
	drain(t, m, Key{Rule: 1, ID: "new-1"})
	if !refused(m, oldest) {
		t.Fatal("the least recently used exhausted bucket was evicted while a full one was there")
	}
	for _, k := range others {
		if !refused(m, k) {
			t.Fatalf("%v evicted while a full bucket was there", k)
		}
	}
	// Nothing has refilled: the next new key evicts the least recently
	// used bucket, wherever it is.
	lru := others[5]
	for _, k := range append([]Key{oldest, {Rule: 1, ID: "new-1"}}, others...) {
		if k != lru {
			c.add(time.Millisecond)
			m.Take(k, rate.Every(time.Hour), 1)
		}
	}
	c.add(time.Millisecond)
	drain(t, m, Key{Rule: 1, ID: "new-2"})
	for _, k := range append([]Key{oldest}, others...) {
		if k != lru && !refused(m, k) {
			t.Errorf("%v evicted, not the least recently used %v", k, lru)
		}
	}
	if refused(m, lru) {
		t.Error("the least recently used bucket was not the one evicted")
	}
	if m.Len() > capacity {
		t.Errorf("Len = %d > %d", m.Len(), capacity)
	}
}

// TestConcurrentEviction inserts from many goroutines into a small full
// map; run with -race. The map ends within its capacity.
func TestConcurrentEviction(t *testing.T) {
	for _, capacity := range []int{1, 8, 100} {
		m := New(capacity, nil)
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 2000 {
					m.Take(Key{Rule: i % 3, ID: strconv.Itoa(w*10_000 + i)}, rate.Every(time.Hour), 2)
				}
			}()
		}
		wg.Wait()
		if m.Len() > m.Cap() {
			t.Errorf("capacity %d: Len %d", capacity, m.Len())
		}
	}
}

// TestNeverRefillingBucketsBounded: buckets with no refill rate are never
// full, and still count against the capacity.
func TestNeverRefillingBucketsBounded(t *testing.T) {
	m := New(8, nil)
	for i := range 100 {
		m.Take(Key{ID: strconv.Itoa(i)}, 0, 1)
	}
	if m.Len() > m.Cap() {
		t.Errorf("Len %d > Cap %d", m.Len(), m.Cap())
	}
}
