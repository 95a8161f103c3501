package mcpauth

import (
	"sync"
	"sync/atomic"
)

// keyFlights lets one goroutine read the store for a key hash while the
// others that want the same hash wait for its answer, so that a burst of
// requests with one uncached key costs one store call.
type keyFlights struct {
	mu      sync.Mutex
	calls   map[[32]byte]*keyFlight
	waiting atomic.Int64 // goroutines waiting for another's read (for tests)
}

type keyFlight struct {
	gen  uint64 // of the keyStore when the read began
	done chan struct{}
	e    *keyEntry
	err  error
}

// do returns fn's answer for sum, calling fn only if no call for sum is in
// progress that began at the same generation gen: a read that began before
// a creation or deletion through this APIKeys may predate it, so a request
// that began after it reads again rather than wait for that answer. A
// waiter gives up when its done channel closes (its request ended), with
// errFlightAbandoned.
func (g *keyFlights) do(sum *[32]byte, gen uint64, done <-chan struct{}, fn func() (*keyEntry, error)) (*keyEntry, error) {
	g.mu.Lock()
	if f, ok := g.calls[*sum]; ok && f.gen == gen {
		g.mu.Unlock()
		g.waiting.Add(1)
		defer g.waiting.Add(-1)
		select {
		case <-f.done:
			return f.e, f.err
		case <-done:
			return nil, errFlightAbandoned
		}
	}
	if g.calls == nil {
		g.calls = make(map[[32]byte]*keyFlight)
	}
	f := &keyFlight{gen: gen, done: make(chan struct{})}
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
	f.e, f.err = fn()
	return f.e, f.err
}
