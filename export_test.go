package mcpauth

import "testing"

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
			if direct && sdkTokenInfoKey == nil {
				// Require never uses it then; TestDirectBridgeWorks says why.
				t.Skip("the direct bridge does not work with this go-sdk")
			}
			saved := directBridge
			directBridge = direct
			t.Cleanup(func() { directBridge = saved })
			f(t)
		})
	}
}
