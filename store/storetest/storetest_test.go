package storetest_test

import (
	"context"
	"testing"
	"time"

	"github.com/mcpauth/mcpauth"
	"github.com/mcpauth/mcpauth/store/storetest"
)

// slowWrites is a memory store whose writes take as long as a busy disk's
// fsync or a distant Redis's round trip.
type slowWrites struct{ *mcpauth.MemoryStore }

func (s slowWrites) Set(ctx context.Context, k string, v []byte, ttl time.Duration) error {
	time.Sleep(20 * time.Millisecond)
	return s.MemoryStore.Set(ctx, k, v, ttl)
}

func (s slowWrites) Create(ctx context.Context, k string, v []byte, ttl time.Duration) error {
	time.Sleep(20 * time.Millisecond)
	return s.MemoryStore.Create(ctx, k, v, ttl)
}

// TestSlowWrites: a correct backend passes the contract however long its
// writes take (within the ttls the suite uses): the expiry checks must not
// assume that entries written one after another expire at once.
func TestSlowWrites(t *testing.T) {
	storetest.Run(t, func(*testing.T) mcpauth.Store { return slowWrites{mcpauth.NewMemoryStore()} })
}
