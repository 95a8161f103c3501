// Package limiter keeps one token-bucket limiter per key in bounded memory.
//
// The map holds at most its capacity, counted over the whole map: keys are
// spread over shards for their locks, not for their room, so no key pushes
// another out while the map has room (a caller with many limited rules
// cannot push out its own exhausted bucket, which would come back full).
//
// A limiter that has been idle long enough to refill its bucket is
// indistinguishable from a new one, so it is dropped first, and dropping it
// changes nothing a caller can observe. Only when the map is full and no
// bucket has refilled does it drop one still refilling: the one that will be
// full soonest, map-wide, which among buckets of one rate is the least
// recently used. That at worst gives its key a full bucket early: the price
// of keeping a flood of distinct keys from exhausting memory.
package limiter

import (
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// A Key names one limiter: a rule and a caller.
type Key struct {
	Rule int
	ID   string
}

// shards spreads the keys over independent locks so that many callers do not
// contend on one mutex.
const shards = 32

// maxLists bounds the refill classes a shard keeps a list for; see
// shard.list.
const maxLists = 8

// Map holds limiters by key. It is safe for concurrent use.
type Map struct {
	seed  maphash.Seed
	cap   int64
	count atomic.Int64 // entries held, plus insertions under way
	epoch time.Time    // the origin of entry.full
	now   func() time.Time
	// soonest[i] is at most the least entry.full of shards[i]
	// (math.MaxInt64 when it is empty): a Take that must evict reads them
	// all, without the shards' locks. A use of an entry only makes its
	// bucket full later, so a Take of a known key leaves it as it is, a
	// bound that evict makes exact when it matters. They sit together so
	// that reading them is a few cache lines.
	soonest [shards]atomic.Int64
	shards  [shards]shard
}

type shard struct {
	mu      sync.Mutex
	entries map[Key]*entry
	// lists holds the entries by refill class, each list most recently used
	// first. Within a class the least recently used entry, the tail, is the
	// one whose bucket will be full soonest.
	lists []list
	index int      // in Map.shards
	_     [64]byte // keep shards' hot fields on their own cache lines
}

type list struct {
	refill     time.Duration // of the class's first entry
	head, tail *entry
}

type entry struct {
	key        Key
	lim        *rate.Limiter
	full       int64 // when the bucket is full at the latest, in ns since Map.epoch
	refill     time.Duration
	list       int // index in shard.lists
	prev, next *entry
}

// New returns a map that holds at most capacity limiters (at least one). now
// is the clock; nil means time.Now.
func New(capacity int, now func() time.Time) *Map {
	if now == nil {
		now = time.Now
	}
	m := &Map{seed: maphash.MakeSeed(), cap: int64(max(capacity, 1)), now: now}
	m.epoch = now()
	for i := range m.shards {
		m.shards[i].entries = make(map[Key]*entry)
		m.shards[i].index = i
		m.soonest[i].Store(math.MaxInt64)
	}
	return m
}

// Cap is the most limiters the map holds.
func (m *Map) Cap() int { return int(m.cap) }

// Len is the number of limiters held.
func (m *Map) Len() int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		n += len(s.entries)
		s.mu.Unlock()
	}
	return n
}

// shardOf spreads keys by caller and rule alike, so that one caller's many
// rules do not all wait on one lock.
func (m *Map) shardOf(key Key) *shard {
	h := maphash.String(m.seed, key.ID) ^ uint64(key.Rule)*0x9e3779b97f4a7c15
	h ^= h >> 32
	return &m.shards[h%shards]
}

// Take takes one token from the key's bucket, which refills at limit per
// second up to burst. If the bucket is empty it takes nothing and reports how
// long until a token will be there.
func (m *Map) Take(key Key, limit rate.Limit, burst int) (ok bool, retryAfter time.Duration) {
	ok, retryAfter, _ = m.TakeLeft(key, limit, burst)
	return ok, retryAfter
}

// TakeLeft is Take that also reports the tokens left in the bucket after
// it, for a caller that tells its clients.
func (m *Map) TakeLeft(key Key, limit rate.Limit, burst int) (ok bool, retryAfter time.Duration, left float64) {
	return m.TakeLeftAt(key, limit, burst, m.now())
}

// TakeLeftAt is TakeLeft at now, a time the caller read from the map's
// clock already.
func (m *Map) TakeLeftAt(key Key, limit rate.Limit, burst int, now time.Time) (ok bool, retryAfter time.Duration, left float64) {
	t := int64(now.Sub(m.epoch))
	s := m.shardOf(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entries[key]
	if e == nil {
		s.dropFull(m, t)
		if m.count.Add(1) > m.cap && !m.evict(s) {
			// Another shard's lock is taken: make room without this
			// one's, so that two Takes never wait on each other's.
			s.mu.Unlock()
			m.evict(nil)
			s.mu.Lock()
			if e = s.entries[key]; e != nil {
				// Inserted meanwhile by another Take.
				m.count.Add(-1)
			}
		}
		if e == nil {
			e = s.insert(key, limit, burst)
		}
	} else {
		s.unlink(e)
	}
	e.full = addSat(t, e.refill)
	s.pushFront(e)
	if b := &m.soonest[s.index]; e.full < b.Load() {
		// A new entry: keep the bound a bound.
		b.Store(e.full)
	}
	if e.lim.AllowN(now, 1) {
		return true, 0, e.lim.TokensAt(now)
	}
	// Refused: ask when a token will be there, and give the reservation
	// back so that asking costs nothing.
	r := e.lim.ReserveN(now, 1)
	if !r.OK() {
		return false, e.refill, 0
	}
	d := r.DelayFrom(now)
	r.CancelAt(now)
	return false, d, 0
}

// evict drops entries until the map is within its capacity: each time the
// one whose bucket is full soonest (or already is), map-wide. The shards'
// bounds are read without locks: the least is made exact, and its entry
// dropped if it is still no later than the next shard's bound. Concurrent
// Takes make that a near second at worst.
//
// held is a shard the caller has locked, or nil. With one, evict takes
// another shard's lock only if it is free, and reports false, leaving the
// map over capacity, when it is not; without one it waits for locks, one at
// a time.
func (m *Map) evict(held *shard) bool {
	for m.count.Load() > m.cap {
		best, soonest, next := -1, int64(math.MaxInt64), int64(math.MaxInt64)
		for i := range m.soonest {
			switch v := m.soonest[i].Load(); {
			case v < soonest:
				best, soonest, next = i, v, soonest
			case v < next:
				next = v
			}
		}
		if best < 0 {
			// Every shard is empty: the count is insertions under way,
			// each of which evicts for itself.
			return true
		}
		s := &m.shards[best]
		switch {
		case s == held:
		case held == nil:
			s.mu.Lock()
		case !s.mu.TryLock():
			return false
		}
		s.updateSoonest(m)
		if e := s.soonestEntry(); e != nil && e.full <= next {
			s.remove(m, e)
			s.updateSoonest(m)
		}
		if s != held {
			s.mu.Unlock()
		}
	}
	return true
}

func (s *shard) insert(key Key, limit rate.Limit, burst int) *entry {
	// A new limiter starts with a full bucket.
	refill := refillTime(limit, burst)
	e := &entry{key: key, lim: rate.NewLimiter(limit, burst), refill: refill, list: s.list(refill)}
	s.entries[key] = e
	return e
}

// list returns the index of the list for entries that refill in refill:
// the list of the same refill time to the millisecond (rules of one unit, a
// second, minute or hour, refill in it to within rounding), else a new one,
// or past maxLists the one nearest in refill time. An entry whose refill
// differs from its list's only makes the list's order by fullness
// approximate.
func (s *shard) list(refill time.Duration) int {
	best, diff := -1, time.Duration(math.MaxInt64)
	for i := range s.lists {
		d := s.lists[i].refill - refill
		if d < 0 {
			d = -d
		}
		if d < diff {
			best, diff = i, d
		}
	}
	if best >= 0 && (diff < time.Millisecond || len(s.lists) >= maxLists) {
		return best
	}
	s.lists = append(s.lists, list{refill: refill})
	return len(s.lists) - 1
}

// dropFull drops the entries whose buckets have refilled: they are at the
// tails of their lists.
func (s *shard) dropFull(m *Map, t int64) {
	dropped := false
	for i := range s.lists {
		l := &s.lists[i]
		for l.tail != nil && l.tail.full <= t {
			s.remove(m, l.tail)
			dropped = true
		}
	}
	if dropped {
		s.updateSoonest(m)
	}
}

// soonestEntry is the entry whose bucket is full soonest, or nil.
func (s *shard) soonestEntry() *entry {
	var best *entry
	for i := range s.lists {
		if e := s.lists[i].tail; e != nil && (best == nil || e.full < best.full) {
			best = e
		}
	}
	return best
}

// updateSoonest makes the shard's bound in m exact.
func (s *shard) updateSoonest(m *Map) {
	v := int64(math.MaxInt64)
	if e := s.soonestEntry(); e != nil {
		v = e.full
	}
	if b := &m.soonest[s.index]; b.Load() != v {
		b.Store(v)
	}
}

// refillTime is how long an empty bucket takes to fill.
func refillTime(limit rate.Limit, burst int) time.Duration {
	if limit == rate.Inf {
		return 0
	}
	if limit <= 0 {
		// It never refills: dropping it would refill it.
		return math.MaxInt64
	}
	return time.Duration(min(float64(burst)/float64(limit)*float64(time.Second), math.MaxInt64/2))
}

// addSat is t+d, at most math.MaxInt64-1: math.MaxInt64 is a shard's
// soonest when it is empty, and an entry that never refills must still be
// found to evict.
func addSat(t int64, d time.Duration) int64 {
	if int64(d) >= math.MaxInt64-1-t {
		return math.MaxInt64 - 1
	}
	return t + int64(d)
}

func (s *shard) remove(m *Map, e *entry) {
	s.unlink(e)
	delete(s.entries, e.key)
	m.count.Add(-1)
}

func (s *shard) unlink(e *entry) {
	l := &s.lists[e.list]
	if e.prev != nil {
		e.prev.next = e.next
	} else if l.head == e {
		l.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else if l.tail == e {
		l.tail = e.prev
	}
	e.prev, e.next = nil, nil
}

func (s *shard) pushFront(e *entry) {
	l := &s.lists[e.list]
	e.next = l.head
	if l.head != nil {
		l.head.prev = e
	}
	l.head = e
	if l.tail == nil {
		l.tail = e
	}
}
