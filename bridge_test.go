package mcpauth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/mcpauth/mcpauth/internal/bridge"
	"github.com/modelcontextprotocol/go-sdk/auth"
)

// TestDirectBridgeWorks fails when a go-sdk release stops reading TokenInfo
// through the context's Value method. Require then still works, through
// RequireBearerToken, but costs more per request; this test says so.
func TestDirectBridgeWorks(t *testing.T) {
	if bridge.SDKKey == nil || !bridge.Direct {
		t.Fatal("go-sdk's TokenInfoFromContext no longer reads what the direct bridge answers; Require falls back to RequireBearerToken")
	}
	p := (&Principal{Subject: "alice", Method: MethodAPIKey}).seal()
	ctx := &bridge.Context{Context: context.Background(), Key: principalKey{}, Caller: p, Info: p.tokenInfo(), SDKKey: bridge.SDKKey}
	if got := auth.TokenInfoFromContext(ctx); got == nil || got.UserID != "apikey:alice" {
		t.Fatalf("TokenInfoFromContext = %+v", got)
	}
	if PrincipalFromHTTPRequest(httptest.NewRequestWithContext(ctx, http.MethodGet, "/", nil)) != p {
		t.Fatal("PrincipalFromHTTPRequest does not read the bridge's context")
	}
}

// TestPrincipalContext checks that the context carrying the principal is an
// ordinary context for everything else: its parent's values, cancellation
// and deadline pass through (to children, to context.AfterFunc, but not
// through context.WithoutCancel), a value set on top of it wins, and a
// RequireBearerToken inside it overrides its TokenInfo as go-sdk would.
func TestPrincipalContext(t *testing.T) {
	ForEachBridge(t, func(t *testing.T) {
		type ownKey struct{}
		p := (&Principal{Subject: "alice", Method: MethodAPIKey}).seal()
		inner := &auth.TokenInfo{UserID: "inner"}
		parent, cancelParent := context.WithDeadline(context.WithValue(context.Background(), ownKey{}, "parent"), time.Now().Add(time.Hour))
		defer cancelParent()
		var checked bool
		h := Require(nil, AuthenticatorFunc(func(*http.Request) (*Principal, error) { return p, nil }))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := r.Context()
			if PrincipalFromHTTPRequest(r) != p {
				t.Error("PrincipalFromHTTPRequest lost the principal")
			}
			if ti := auth.TokenInfoFromContext(ctx); ti == nil || ti.UserID != "apikey:alice" {
				t.Errorf("TokenInfo = %+v", ti)
			}
			if ctx.Value(ownKey{}) != "parent" {
				t.Error("a value of the parent context is lost")
			}
			if ctx.Value(struct{}{}) != nil || ctx.Value([]byte("uncomparable")) != nil {
				t.Error("an unknown key has a value")
			}
			if _, ok := ctx.Deadline(); !ok {
				t.Error("the parent's deadline is lost")
			}
			child, cancel := context.WithCancel(context.WithValue(ctx, ownKey{}, "child"))
			defer cancel()
			if child.Value(ownKey{}) != "child" || PrincipalFromHTTPRequest(r.WithContext(child)) != p {
				t.Error("values set on top of the principal's context are wrong")
			}
			auth.RequireBearerToken(func(context.Context, string, *http.Request) (*auth.TokenInfo, error) { return inner, nil }, &auth.RequireBearerTokenOptions{AllowMissingExpiration: true})(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
				if auth.TokenInfoFromContext(r.Context()) != inner {
					t.Error("an inner RequireBearerToken did not override the TokenInfo")
				}
			})).ServeHTTP(w, r.WithContext(child))
			afterFunc := make(chan struct{})
			context.AfterFunc(ctx, func() { close(afterFunc) })
			detached := context.WithoutCancel(ctx)
			if ctx.Err() != nil || child.Err() != nil {
				t.Fatal("the principal's context is done before the request's")
			}
			cancelParent()
			select {
			case <-child.Done():
			default:
				t.Error("cancelling the request's context did not reach a child of the principal's context")
			}
			if ctx.Err() != context.Canceled || child.Err() != context.Canceled {
				t.Errorf("Err = %v, child's %v, want context.Canceled", ctx.Err(), child.Err())
			}
			select {
			case <-afterFunc:
			case <-time.After(5 * time.Second):
				t.Error("context.AfterFunc on the principal's context did not run")
			}
			if detached.Err() != nil || PrincipalFromHTTPRequest(r.WithContext(detached)) != p || auth.TokenInfoFromContext(detached) == nil {
				t.Error("context.WithoutCancel of the principal's context is cancelled or lost its values")
			}
			checked = true
		}))
		r := httptest.NewRequestWithContext(parent, http.MethodPost, "/mcp", nil)
		r.Header.Set("Authorization", "Bearer anything")
		h.ServeHTTP(httptest.NewRecorder(), r)
		if !checked {
			t.Fatal("the handler did not run")
		}
	})
}
