// Package limiter keeps one token-bucket limiter per key in bounded memory.
//
// The map never holds more than its capacity. A limiter that has been idle
// long enough to refill its bucket is indistinguishable from a new one, so it
// is dropped first, and dropping it changes nothing a caller can observe.
// Only when every entry is still refilling does the map drop the least
// recently used one, which at worst gives that key a full bucket early: the
// price of keeping a flood of distinct keys from exhausting memory.
package limiter

import (
	"hash/maphash"
	"sync"
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

// Map holds limiters by key. It is safe for concurrent use.
type Map struct {
	seed   maphash.Seed
	shards [shards]shard
	now    func() time.Time
}

type shard struct {
	mu      sync.Mutex
	max     int
	entries map[Key]*entry
	// head is the most recently used entry, tail the least; the list runs
	// through entry.prev and entry.next.
	head, tail *entry
}

type entry struct {
	key        Key
	lim        *rate.Limiter
	last       time.Time     // last use
	refill     time.Duration // time for an empty bucket to fill
	prev, next *entry
}

// New returns a map that holds at most capacity limiters (at least one per
// shard). now is the clock; nil means time.Now.
func New(capacity int, now func() time.Time) *Map {
	if now == nil {
		now = time.Now
	}
	per := capacity / shards
	if per < 1 {
		per = 1
	}
	m := &Map{seed: maphash.MakeSeed(), now: now}
	for i := range m.shards {
		m.shards[i].max = per
		m.shards[i].entries = make(map[Key]*entry)
	}
	return m
}

// Cap is the most limiters the map holds.
func (m *Map) Cap() int { return m.shards[0].max * shards }

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

// Take takes one token from the key's bucket, which refills at limit per
// second up to burst. If the bucket is empty it takes nothing and reports how
// long until a token will be there.
func (m *Map) Take(key Key, limit rate.Limit, burst int) (ok bool, retryAfter time.Duration) {
	now := m.now()
	s := &m.shards[maphash.String(m.seed, key.ID)%shards]
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entries[key]
	if e == nil {
		e = s.insert(key, limit, burst, now)
	} else {
		s.unlink(e)
	}
	s.pushFront(e)
	e.last = now
	if e.lim.AllowN(now, 1) {
		return true, 0
	}
	// Refused: ask when a token will be there, and give the reservation
	// back so that asking costs nothing.
	r := e.lim.ReserveN(now, 1)
	if !r.OK() {
		return false, e.refill
	}
	d := r.DelayFrom(now)
	r.CancelAt(now)
	return false, d
}

func (s *shard) insert(key Key, limit rate.Limit, burst int, now time.Time) *entry {
	// Drop the limiters that have refilled: they are oldest at the tail.
	for s.tail != nil && now.Sub(s.tail.last) >= s.tail.refill {
		s.remove(s.tail)
	}
	if len(s.entries) >= s.max {
		s.remove(s.tail)
	}
	// A new limiter starts with a full bucket.
	e := &entry{key: key, lim: rate.NewLimiter(limit, burst), refill: refillTime(limit, burst)}
	s.entries[key] = e
	return e
}

// refillTime is how long an empty bucket takes to fill.
func refillTime(limit rate.Limit, burst int) time.Duration {
	if limit <= 0 || limit == rate.Inf {
		return 0
	}
	return time.Duration(float64(burst) / float64(limit) * float64(time.Second))
}

func (s *shard) remove(e *entry) {
	s.unlink(e)
	delete(s.entries, e.key)
}

func (s *shard) unlink(e *entry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else if s.head == e {
		s.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else if s.tail == e {
		s.tail = e.prev
	}
	e.prev, e.next = nil, nil
}

func (s *shard) pushFront(e *entry) {
	e.next = s.head
	if s.head != nil {
		s.head.prev = e
	}
	s.head = e
	if s.tail == nil {
		s.tail = e
	}
}
