package mcpauth

import (
	"context"
	"testing"
	"time"

	"github.com/mcpauth/mcpauth/internal/bridge"
)

// APIKeyID is a key's public identifier, for the tests of package
// mcpauth_test.
var APIKeyID = apiKeyID

// bridgePlaceholder is the header go-sdk is shown by the fallback bridge.
const bridgePlaceholder = bridge.Placeholder

// ForEachBridge runs f once with each bridge into go-sdk's TokenInfo: the
// direct one Require uses with this go-sdk, and the RequireBearerToken one it
// falls back to should a go-sdk release change how it stores TokenInfo. The
// bridge is chosen when Require wraps its handler, so f must build its
// handlers itself.
func ForEachBridge(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	for _, direct := range []bool{true, false} {
		name := "direct"
		if !direct {
			name = "go-sdk-RequireBearerToken"
		}
		t.Run(name, func(t *testing.T) {
			if direct && bridge.SDKKey == nil {
				// Require never uses it then; TestDirectBridgeWorks says why.
				t.Skip("the direct bridge does not work with this go-sdk")
			}
			saved := bridge.Direct
			bridge.Direct = direct
			t.Cleanup(func() { bridge.Direct = saved })
			f(t)
		})
	}
}

// RevokeElsewhere records a revocation in store as another replica's
// RevokeToken would: this process is not told, so only the periodic check
// of open requests can find it.
func RevokeElsewhere(ctx context.Context, store Store, issuer, jti string) error {
	return store.Set(ctx, revokedKey(jtiRevocationID(issuer, jti)), nil, time.Hour)
}
