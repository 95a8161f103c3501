package bridge

import (
	"context"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/auth"
)

// TestProbeKey checks the probe against go-sdk's TokenInfoFromContext
// and against ways a go-sdk release could read TokenInfo that the direct
// bridge cannot answer for: each must make the probe report that the direct
// bridge does not work, so that Require falls back to RequireBearerToken,
// rather than panic while the package initializes.
func TestProbeKey(t *testing.T) {
	type newKey struct{}
	type holder struct{ info *auth.TokenInfo }
	for _, tt := range []struct {
		name        string
		fromContext func(context.Context) *auth.TokenInfo
		works       bool
	}{
		{"go-sdk", auth.TokenInfoFromContext, true},
		{"reads no key", func(context.Context) *auth.TokenInfo { return nil }, false},
		{"always has TokenInfo", func(context.Context) *auth.TokenInfo { return &auth.TokenInfo{} }, false},
		{"returns a copy", func(ctx context.Context) *auth.TokenInfo {
			ti, _ := ctx.Value(newKey{}).(*auth.TokenInfo)
			if ti == nil {
				return nil
			}
			c := *ti
			return &c
		}, false},
		{"stores another type", func(ctx context.Context) *auth.TokenInfo {
			v := ctx.Value(newKey{})
			if v == nil {
				return nil
			}
			return v.(*holder).info
		}, false},
		{"uncomparable key", func(ctx context.Context) *auth.TokenInfo {
			ti, _ := ctx.Value([]string{"token-info"}).(*auth.TokenInfo)
			return ti
		}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			key := ProbeKey(tt.fromContext)
			if got := key != nil; got != tt.works {
				t.Fatalf("probe found a key: %v, want %v", got, tt.works)
			}
			if tt.works && key != SDKKey {
				t.Errorf("probe found %#v, not %#v", key, SDKKey)
			}
		})
	}
}
