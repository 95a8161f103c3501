package mcpauth_test

import (
	"context"
	"testing"

	"github.com/mcpauth/mcpauth"
	"github.com/mcpauth/mcpauth/store/storetest"
)

func TestMemoryStoreContract(t *testing.T) {
	storetest.Run(t, func(*testing.T) mcpauth.Store { return mcpauth.NewMemoryStore() })
}

// TestMemoryStoreZeroValue checks that a MemoryStore declared as a plain
// variable works, as its doc says.
func TestMemoryStoreZeroValue(t *testing.T) {
	var s mcpauth.MemoryStore
	storetest.Run(t, func(*testing.T) mcpauth.Store { return &mcpauth.MemoryStore{} })
	if _, err := s.Incr(context.Background(), "n", 0); err != nil {
		t.Fatal(err)
	}
}
