package mcpauth

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestMemoryStoreSweeps checks that expired entries do not pile up in a
// store whose keys are written once and never read again.
func TestMemoryStoreSweeps(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	s := newMemoryStore(func() time.Time { return now })
	ctx := context.Background()
	size := func() (n int) {
		for i := range s.shards {
			n += len(s.shards[i].entries)
		}
		return n
	}
	for i := range 20_000 {
		if err := s.Set(ctx, fmt.Sprintf("revoked:%d", i), []byte("x"), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if n := size(); n != 20_000 {
		t.Fatalf("size %d before expiry", n)
	}
	now = now.Add(2 * time.Minute)
	for i := range memoryShards * sweepEvery * 2 {
		if err := s.Set(ctx, fmt.Sprintf("fresh:%d", i), []byte("x"), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if n := size(); n > memoryShards*sweepEvery*2 {
		t.Errorf("size %d after the old entries expired: they were not swept", n)
	}
}
