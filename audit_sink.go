package mcpauth

import (
	"context"
	"sync"
	"sync/atomic"
)

// AsyncSink hands events to another [EventSink] on a goroutine of its own,
// through a bounded buffer, so that a slow sink (a network log collector,
// a disk that stalls) never holds up a request: when the buffer is full,
// an event is dropped and counted instead. Make one with [NewAsyncSink];
// it is safe for concurrent use.
type AsyncSink struct {
	next    EventSink
	ch      chan asyncEvent
	done    chan struct{}
	stopped chan struct{}
	once    sync.Once
	dropped atomic.Uint64
}

type asyncEvent struct {
	ctx context.Context
	e   Event
}

// NewAsyncSink returns a sink that buffers up to size events (at least 1;
// zero means 4,096) for next, which it calls from one goroutine, in order.
// Close stops it.
func NewAsyncSink(next EventSink, size int) *AsyncSink {
	if size <= 0 {
		size = 4096
	}
	if next == nil {
		next = logSink{}
	}
	s := &AsyncSink{next: next, ch: make(chan asyncEvent, size), done: make(chan struct{}), stopped: make(chan struct{})}
	go s.run()
	return s
}

// Record implements [EventSink]: it queues e, or drops it if the buffer
// is full or the sink closed. It never waits. The context handed on keeps
// ctx's values, not its cancellation, since the request may be over by
// the time next sees the event.
func (s *AsyncSink) Record(ctx context.Context, e Event) {
	select {
	case <-s.done:
		s.dropped.Add(1)
		return
	default:
	}
	select {
	case s.ch <- asyncEvent{context.WithoutCancel(ctx), e}:
	default:
		s.dropped.Add(1)
	}
}

// Dropped is how many events were dropped so far: a count to export as a
// metric, and to alert on.
func (s *AsyncSink) Dropped() uint64 { return s.dropped.Load() }

// Close hands the buffered events to next, then stops the goroutine. Events
// recorded after Close are dropped.
func (s *AsyncSink) Close() error {
	s.once.Do(func() { close(s.done) })
	<-s.stopped
	return nil
}

func (s *AsyncSink) run() {
	defer close(s.stopped)
	for {
		select {
		case ev := <-s.ch:
			s.next.Record(ev.ctx, ev.e)
		case <-s.done:
			for {
				select {
				case ev := <-s.ch:
					s.next.Record(ev.ctx, ev.e)
				default:
					return
				}
			}
		}
	}
}
