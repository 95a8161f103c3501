// Package bridge puts an authenticated caller where go-sdk's Streamable HTTP
// handler looks for it: auth.TokenInfoFromContext on the request's context,
// from which go-sdk fills req.Extra.TokenInfo and binds sessions to
// TokenInfo.UserID.
//
// go-sdk stores TokenInfo under an unexported key that only its
// RequireBearerToken sets. A context.Context is an interface, though, and
// TokenInfoFromContext can only ask the context for that key. So the direct
// bridge learns the key once, by asking TokenInfoFromContext to read from a
// context that records what it is asked, and answers for it from a context
// that holds the caller. That costs one small allocation and one request
// copy per request, where going through RequireBearerToken costs a second
// context and request copy, a header parse, and, for requests that did not
// authenticate with "Authorization: Bearer", a copy of the whole header.
//
// The direct bridge is used only when a probe at start-up shows that go-sdk
// reads TokenInfo back from it. Should a go-sdk release change how it stores
// TokenInfo, the bridge falls back to running RequireBearerToken.
package bridge

import (
	"context"
	"net/http"
	"time"

	"github.com/mcpauth/mcpauth/internal/header"
	"github.com/modelcontextprotocol/go-sdk/auth"
)

// SDKKey is the key go-sdk's TokenInfoFromContext asks the context for, or
// nil when the direct bridge does not work with this go-sdk.
var SDKKey = ProbeKey(auth.TokenInfoFromContext)

// Direct selects the direct bridge for the handlers New builds from now on;
// tests turn it off to run the fallback.
var Direct = SDKKey != nil

// A Handler serves a request whose caller was authenticated: ctx replaces
// the request's context (it derives from it, and may be cancelled before
// it); value is the caller as its package keeps it, put on the context
// under that package's key; info is the caller as go-sdk sees it.
type Handler func(w http.ResponseWriter, r *http.Request, ctx context.Context, value any, info *auth.TokenInfo)

// New returns next behind the bridge. key is the context key under which
// next reads value back; it should be of an unexported type of the caller's
// package, so that no other code can put a caller on a request.
func New(next http.Handler, key any) Handler {
	if Direct {
		sdkKey := SDKKey
		return func(w http.ResponseWriter, r *http.Request, ctx context.Context, value any, info *auth.TokenInfo) {
			next.ServeHTTP(w, r.WithContext(&Context{Context: ctx, Key: key, Caller: value, Info: info, SDKKey: sdkKey}))
		}
	}
	sdk := auth.RequireBearerToken(verifier, &auth.RequireBearerTokenOptions{
		// The authenticators have already checked expiry, some of them with
		// leeway for clock skew; go-sdk must not judge it a second time.
		AllowMissingExpiration: true,
		ClockSkew:              time.Duration(1<<63 - 1),
	})(restoreHeader(next))
	return func(w http.ResponseWriter, r *http.Request, ctx context.Context, value any, info *auth.TokenInfo) {
		ctx = context.WithValue(context.WithValue(ctx, key, value), infoKey{}, info)
		// RequireBearerToken reads only "Authorization: Bearer <token>". A
		// request that authenticated another way (X-API-Key, mTLS, a bearer
		// header with unusual spacing) is shown to it with a placeholder
		// header, and the original header is put back before next sees the
		// request.
		if !header.Canonical(r.Header) {
			ctx = context.WithValue(ctx, originalHeaderKey{}, r.Header)
			r2 := r.WithContext(ctx)
			r2.Header = make(http.Header, len(r.Header)+1)
			for k, v := range r.Header {
				r2.Header[k] = v
			}
			r2.Header["Authorization"] = []string{Placeholder}
			sdk.ServeHTTP(w, r2)
			return
		}
		sdk.ServeHTTP(w, r.WithContext(ctx))
	}
}

// Context carries the caller of a request: Caller under Key for its own
// package, and Info for go-sdk under SDKKey. Every other key, and
// cancellation, are its parent's.
type Context struct {
	context.Context
	Key, Caller any
	Info        *auth.TokenInfo
	SDKKey      any
}

// Value implements context.Context.
func (c *Context) Value(key any) any {
	switch key {
	case c.Key:
		return c.Caller
	case c.SDKKey:
		return c.Info
	}
	return c.Context.Value(key)
}

// keyRecorder is a context that remembers the first key it is asked for.
type keyRecorder struct {
	context.Context
	key any
}

func (c *keyRecorder) Value(key any) any {
	if c.key == nil {
		c.key = key
	}
	return nil
}

// ProbeKey returns the key fromContext, which is go-sdk's
// TokenInfoFromContext, reads TokenInfo under, or nil if the direct bridge
// cannot answer for it.
func ProbeKey(fromContext func(context.Context) *auth.TokenInfo) (key any) {
	// It runs while the package initializes: a go-sdk that reads something
	// else under the key (and panics on what the bridge's context answers)
	// must leave the fallback, not crash every program that imports the
	// package.
	defer func() {
		if recover() != nil {
			key = nil
		}
	}()
	rec := &keyRecorder{Context: context.Background()}
	if fromContext(rec) != nil || rec.key == nil {
		return nil
	}
	// Check the round trip before trusting it: go-sdk must read back
	// exactly the TokenInfo the bridge's context answers with.
	info := &auth.TokenInfo{UserID: "mcpauth-probe"}
	ctx := &Context{Context: context.Background(), Key: probeKey{}, Info: info, SDKKey: rec.key}
	if fromContext(ctx) != info {
		return nil
	}
	return rec.key
}

type probeKey struct{}

// infoKey holds the TokenInfo that the fallback's verifier hands go-sdk.
type infoKey struct{}

// originalHeaderKey holds the request's own header while go-sdk sees a copy
// with a placeholder Authorization header.
type originalHeaderKey struct{}

// Placeholder is the Authorization header RequireBearerToken is shown for
// requests that authenticated some other way. It is never a credential: the
// fallback's verifier ignores the token and reads the TokenInfo that the
// bridge put on the context.
const Placeholder = "Bearer mcpauth-authenticated"

func verifier(ctx context.Context, _ string, _ *http.Request) (*auth.TokenInfo, error) {
	info, _ := ctx.Value(infoKey{}).(*auth.TokenInfo)
	if info == nil {
		return nil, auth.ErrInvalidToken
	}
	return info, nil
}

func restoreHeader(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h, ok := r.Context().Value(originalHeaderKey{}).(http.Header); ok {
			// r is the copy RequireBearerToken made for us; nothing else
			// holds it.
			r.Header = h
		}
		next.ServeHTTP(w, r)
	})
}
