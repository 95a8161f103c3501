package mcpauth

import (
	"context"
	"net/http"
	"time"

	"github.com/mcpauth/mcpauth/internal/header"
	"github.com/modelcontextprotocol/go-sdk/auth"
)

// The bridge puts an authenticated principal where go-sdk's Streamable HTTP
// handler looks for the caller: auth.TokenInfoFromContext on the request's
// context, from which go-sdk fills req.Extra.TokenInfo and binds sessions to
// TokenInfo.UserID.
//
// go-sdk stores TokenInfo under an unexported key that only its
// RequireBearerToken sets. A context.Context is an interface, though, and
// TokenInfoFromContext can only ask the context for that key. So the direct
// bridge learns the key once, by asking TokenInfoFromContext to read from a
// context that records what it is asked, and answers for it from a context
// that holds the principal. That costs one small allocation and one request
// copy per request, where going through RequireBearerToken costs a second
// context and request copy, a header parse, and, for requests that did not
// authenticate with "Authorization: Bearer", a copy of the whole header.
//
// The direct bridge is used only when a probe at start-up shows that go-sdk
// reads TokenInfo back from it. Should a go-sdk release change how it stores
// TokenInfo, the middleware falls back to running RequireBearerToken.

// sdkTokenInfoKey is the key go-sdk's TokenInfoFromContext asks the context
// for, or nil when the direct bridge does not work with this go-sdk.
var sdkTokenInfoKey = probeTokenInfoKey(auth.TokenInfoFromContext)

// directBridge selects the direct bridge; tests turn it off to run the
// fallback.
var directBridge = sdkTokenInfoKey != nil

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

// probeTokenInfoKey returns the key fromContext, which is go-sdk's
// TokenInfoFromContext, reads TokenInfo under, or nil if the direct bridge
// cannot answer for it.
func probeTokenInfoKey(fromContext func(context.Context) *auth.TokenInfo) (key any) {
	// It runs while the package initializes: a go-sdk that reads something
	// else under the key (and panics on what the principal context answers)
	// must leave Require the fallback, not crash every program that
	// imports the package.
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
	// exactly the TokenInfo the principal context answers with.
	info := &auth.TokenInfo{UserID: "mcpauth-probe"}
	ctx := &principalContext{Context: context.Background(), info: info, sdkKey: rec.key}
	if fromContext(ctx) != info {
		return nil
	}
	return rec.key
}

// principalContext carries the principal of a request: for
// PrincipalFromHTTPRequest under principalKey, and for go-sdk under its
// TokenInfo key. Every other key, and cancellation, are its parent's.
type principalContext struct {
	context.Context
	p      *Principal
	info   *auth.TokenInfo
	sdkKey any // the key answered with info; sdkTokenInfoKey once probed
}

func (c *principalContext) Value(key any) any {
	switch key {
	case principalKey{}:
		return c.p
	case c.sdkKey:
		return c.info
	}
	return c.Context.Value(key)
}

// bridge returns next behind the bridge that Require hands authenticated
// requests to, with their principal.
func bridge(next http.Handler) func(http.ResponseWriter, *http.Request, *Principal) {
	if directBridge {
		key := sdkTokenInfoKey
		return func(w http.ResponseWriter, r *http.Request, p *Principal) {
			next.ServeHTTP(w, r.WithContext(&principalContext{Context: r.Context(), p: p, info: p.tokenInfo(), sdkKey: key}))
		}
	}
	sdk := auth.RequireBearerToken(bridgeVerifier, &auth.RequireBearerTokenOptions{
		// The authenticators have already checked expiry, some of them with
		// leeway for clock skew; go-sdk must not judge it a second time.
		AllowMissingExpiration: true,
		ClockSkew:              time.Duration(1<<63 - 1),
	})(restoreHeader(next))
	return func(w http.ResponseWriter, r *http.Request, p *Principal) {
		ctx := context.WithValue(r.Context(), principalKey{}, p)
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
			r2.Header["Authorization"] = []string{bridgePlaceholder}
			sdk.ServeHTTP(w, r2)
			return
		}
		sdk.ServeHTTP(w, r.WithContext(ctx))
	}
}

// originalHeaderKey holds the request's own header while go-sdk sees a copy
// with a placeholder Authorization header.
type originalHeaderKey struct{}

// bridgePlaceholder is the Authorization header RequireBearerToken is shown
// for requests that authenticated some other way. It is never a credential:
// bridgeVerifier ignores the token and reads the principal that the
// middleware put on the context.
const bridgePlaceholder = "Bearer mcpauth-authenticated"

func bridgeVerifier(ctx context.Context, _ string, _ *http.Request) (*auth.TokenInfo, error) {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	if p == nil {
		return nil, auth.ErrInvalidToken
	}
	return p.tokenInfo(), nil
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
