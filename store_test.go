package mcpauth_test

import (
	"testing"

	"github.com/mcpauth/mcpauth"
	"github.com/mcpauth/mcpauth/store/storetest"
)

func TestMemoryStoreContract(t *testing.T) {
	storetest.Run(t, func(*testing.T) mcpauth.Store { return mcpauth.NewMemoryStore() })
}
