package mcpauth

import (
	"errors"
	"sync"
	"sync/atomic"
)

// flights lets one goroutine find the answer for a hash (of an API key, of
// an opaque token) while the others that want the same one wait for it, so
// that a burst of requests with one uncached credential costs one store
// read or one introspection.
type flights[V any] struct {
	mu      sync.Mutex
	calls   map[[32]byte]*flight[V]
	waiting atomic.Int64 // goroutines waiting for another's call (for tests)
}

type flight[V any] struct {
	gen  uint64 // of the caller's state when the call began
	done chan struct{}
	v    V
	err  error
}

// errFlightAbandoned is what a request gets that ended while waiting for
// another's call.
var errFlightAbandoned = errors.New("mcpauth: request ended while waiting for another's lookup of its credential")

// do returns fn's answer for sum, calling fn only if no call for sum is in
// progress that began at the same generation gen: a call that began before
// a change the caller counts in gen (a key created or deleted through this
// APIKeys) may predate it, so a request that began after it calls again
// rather than wait for that answer. A waiter gives up when its done channel
// closes (its request ended), with errFlightAbandoned. fn runs in the
// caller's goroutine, and what it caches is there before the waiters wake.
func (g *flights[V]) do(sum *[32]byte, gen uint64, done <-chan struct{}, fn func() (V, error)) (V, error) {
	g.mu.Lock()
	if f, ok := g.calls[*sum]; ok && f.gen == gen {
		g.mu.Unlock()
		g.waiting.Add(1)
		defer g.waiting.Add(-1)
		select {
		case <-f.done:
			return f.v, f.err
		case <-done:
			var zero V
			return zero, errFlightAbandoned
		}
	}
	if g.calls == nil {
		g.calls = make(map[[32]byte]*flight[V])
	}
	f := &flight[V]{gen: gen, done: make(chan struct{})}
	g.calls[*sum] = f
	g.mu.Unlock()

	defer func() {
		g.mu.Lock()
		if g.calls[*sum] == f {
			delete(g.calls, *sum)
		}
		g.mu.Unlock()
		close(f.done)
	}()
	f.v, f.err = fn()
	return f.v, f.err
}
