package mcpauth

import (
	"context"
	"sync"
	"testing"
)

// blockingSink holds every Record until released.
type blockingSink struct {
	release chan struct{}
	mu      sync.Mutex
	got     []Event
}

func (s *blockingSink) Record(_ context.Context, e Event) {
	<-s.release
	s.mu.Lock()
	s.got = append(s.got, e)
	s.mu.Unlock()
}

// TestAsyncSinkNeverBlocks records through a sink that is stuck: Record
// returns at once, the buffer holds what fits, and the rest is counted as
// dropped; once the sink moves again, Close delivers the buffered events
// in order.
func TestAsyncSinkNeverBlocks(t *testing.T) {
	slow := &blockingSink{release: make(chan struct{})}
	s := NewAsyncSink(slow, 10)
	const n = 1000
	var wg sync.WaitGroup
	for g := range 10 {
		wg.Go(func() {
			for i := range n / 10 {
				s.Record(context.Background(), Event{Kind: EventAuthentication, Detail: string(rune('a' + g)), RequestID: string(rune(i))})
			}
		})
	}
	wg.Wait() // would hang if Record waited on the stuck sink
	// At most the buffer and the one event the goroutine holds got through.
	if d := s.Dropped(); d < n-11 || d > n {
		t.Fatalf("dropped %d of %d, want at least %d", d, n, n-11)
	}
	kept := n - int(s.Dropped())
	close(slow.release)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if len(slow.got) != kept {
		t.Fatalf("delivered %d, want the %d kept", len(slow.got), kept)
	}
	s.Record(context.Background(), Event{})
	if int(s.Dropped()) != n-kept+1 {
		t.Fatal("an event recorded after Close was not counted as dropped")
	}
}

// TestAsyncSinkOrderAndContext checks that events arrive in order, with
// the request context's values but not its cancellation.
func TestAsyncSinkOrderAndContext(t *testing.T) {
	type key struct{}
	got := make(chan context.Context, 100)
	var order []string
	var mu sync.Mutex
	sink := sinkFunc(func(ctx context.Context, e Event) {
		mu.Lock()
		order = append(order, e.RequestID)
		mu.Unlock()
		got <- ctx
	})
	s := NewAsyncSink(sink, 100)
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "v"))
	for i := range 50 {
		s.Record(ctx, Event{RequestID: string(rune('A' + i))})
	}
	cancel()
	_ = s.Close()
	for i, id := range order {
		if id != string(rune('A'+i)) {
			t.Fatalf("event %d is %q: out of order", i, id)
		}
	}
	c := <-got
	if c.Value(key{}) != "v" || c.Err() != nil {
		t.Fatalf("context: value %v, err %v", c.Value(key{}), c.Err())
	}
}

type sinkFunc func(ctx context.Context, e Event)

func (f sinkFunc) Record(ctx context.Context, e Event) { f(ctx, e) }
