package mcpauth

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
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

// lockedBuffer is a buffer that events from other tests' goroutines may
// write to while a test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestLogEventsDefaultJSON: with no logger given, events are JSON lines
// (on standard error) until the application sets slog's default, and go to
// the application's default logger once it has.
func TestLogEventsDefaultJSON(t *testing.T) {
	prevDefault, prevEvents := slog.Default(), defaultEventLogger.Load()
	t.Cleanup(func() { slog.SetDefault(prevDefault); defaultEventLogger.Store(prevEvents) })
	var lines, app lockedBuffer
	defaultEventLogger.Store(slog.New(slog.NewJSONHandler(&lines, nil)))
	e := Event{Kind: EventAuthentication, Outcome: OutcomeFailure, Reason: "invalid", Method: MethodAPIKey, Subject: "json-test-subject", RemoteAddr: "192.0.2.1"}

	slog.SetDefault(builtinDefault) // as a program that never calls SetDefault
	emit(context.Background(), nil, e)
	// Other tests' goroutines may log meanwhile: find this event's line.
	var got map[string]any
	for line := range strings.Lines(lines.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not a JSON line: %q: %v", line, err)
		}
		if m["subject"] == e.Subject {
			got = m
		}
	}
	if got == nil {
		t.Fatalf("the event is not among the JSON lines %q", lines.String())
	}
	for k, want := range map[string]string{"level": "WARN", "kind": "authentication", "outcome": "failure", "reason": "invalid", "method": "apikey", "remote": "192.0.2.1"} {
		if got[k] != want {
			t.Errorf("%s = %v, want %q", k, got[k], want)
		}
	}

	slog.SetDefault(slog.New(slog.NewTextHandler(&app, nil)))
	e.Subject = "json-test-second"
	emit(context.Background(), LogEvents(nil), e)
	if strings.Contains(lines.String(), e.Subject) || !strings.Contains(app.String(), "subject="+e.Subject) {
		t.Errorf("with the application's default set: JSON %q, application's log %q", lines.String(), app.String())
	}
}
