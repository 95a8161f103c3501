package mcpauth

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
)

// The request headers of MCP 2026-07-28 that name the method and its target
// (go-sdk sets and checks them; see its mcp/streamable_headers.go).
const (
	mcpProtocolVersionHeader = "Mcp-Protocol-Version"
	mcpMethodHeader          = "Mcp-Method"
	mcpNameHeader            = "Mcp-Name"
	// Protocol versions are dates, so they compare as strings.
	mcpStandardHeadersVersion = "2026-07-28"
)

// RequireScopes returns HTTP middleware, to be placed after [Require], that
// answers a call whose rule requires OAuth scopes the caller lacks with 403
// and a WWW-Authenticate challenge carrying error="insufficient_scope" and
// the rule's scopes (RFC 6750 §3.1), so that the client can ask for them
// (step-up authorization). opts supplies the challenge's resource_metadata
// and the logger for the audit event; nil means none and slog.Default().
//
// It decides only what a scope step-up would fix: a caller that lacks the
// rule's role, a tool no rule covers and everything else go on to the
// MCP-level [Guard.Middleware], which remains the enforcement point; this
// layer only lets a client learn the scopes early and in the standard way.
//
// Under protocol 2026-07-28 it reads the Mcp-Method and Mcp-Name headers and
// not the body (go-sdk rejects a request whose headers disagree with its
// body), except for subscriptions/listen, whose resource URIs are in the body
// only. Otherwise it reads up to GuardOptions.MaxPeekBytes of the body and
// puts it back for the next handler; a body it cannot parse, or a larger one,
// goes on unjudged, for go-sdk to answer. In a JSON-RPC batch, the scopes of
// every call that lacks them are asked for in one challenge.
func (g *Guard) RequireScopes(opts *RequireOptions) func(http.Handler) http.Handler {
	var o RequireOptions
	if opts != nil {
		o = *opts
	}
	needed := false
	for _, r := range g.c.rules {
		if len(r.scopes) > 0 {
			needed = true
		}
	}
	return func(next http.Handler) http.Handler {
		if !needed {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p := PrincipalFromHTTPRequest(r)
			if p == nil || r.Method != http.MethodPost {
				next.ServeHTTP(w, r)
				return
			}
			var missing []string
			var first error
			var kindOf kind
			var nameOf string
			judge := func(method, name string) {
				k, ok := g.guardedKind(method)
				if !ok {
					return
				}
				_, err := g.c.decide(p, k, name)
				var se *ScopeError
				if errors.As(err, &se) {
					if first == nil {
						first, kindOf, nameOf = err, k, name
					}
					for _, s := range se.Required {
						if !slices.Contains(missing, s) {
							missing = append(missing, s)
						}
					}
				}
			}
			if v := r.Header.Get(mcpProtocolVersionHeader); v >= mcpStandardHeadersVersion {
				// subscriptions/listen names its resources in the body only.
				if m := r.Header.Get(mcpMethodHeader); m != "" && m != methodListen {
					judge(m, r.Header.Get(mcpNameHeader))
					g.finishScopes(w, r, next, &o, first, missing, kindOf, nameOf)
					return
				}
			}
			if r.Body == nil || r.Body == http.NoBody || r.ContentLength > g.peek {
				next.ServeHTTP(w, r)
				return
			}
			buf, err := io.ReadAll(io.LimitReader(r.Body, g.peek+1))
			r2 := new(http.Request)
			*r2 = *r
			if err != nil || int64(len(buf)) > g.peek {
				// Hand on what was read and the rest, unjudged.
				r2.Body = readCloser{io.MultiReader(bytes.NewReader(buf), r.Body), r.Body}
				next.ServeHTTP(w, r2)
				return
			}
			r2.Body = readCloser{bytes.NewReader(buf), r.Body}
			for _, msg := range jsonrpcCalls(buf) {
				judge(msg.method, msg.name)
			}
			g.finishScopes(w, r2, next, &o, first, missing, kindOf, nameOf)
		})
	}
}

func (g *Guard) finishScopes(w http.ResponseWriter, r *http.Request, next http.Handler, o *RequireOptions, first error, missing []string, k kind, name string) {
	if first == nil {
		next.ServeHTTP(w, r)
		return
	}
	sink := g.events
	if sink == nil {
		sink = sinkFor(o.Events, o.Logger)
	}
	audit(r.Context(), sink, "http", "", PrincipalFromHTTPRequest(r), k, name, first)
	writeChallengeFor(w, &ScopeError{Required: missing}, o)
}

// guardedKind is the kind of target a method names, if the guard guards it.
func (g *Guard) guardedKind(method string) (kind, bool) {
	switch method {
	case "tools/call":
		return kindTool, true
	case "prompts/get":
		return kindPrompt, g.c.kinds[kindPrompt].active
	case "resources/read", "resources/subscribe", methodListen:
		return kindResource, g.c.kinds[kindResource].active
	}
	return 0, false
}

// methodListen is 2026-07-28's subscriptions/listen, by which a client
// subscribes to resources (among other notifications).
const methodListen = "subscriptions/listen"

type readCloser struct {
	io.Reader
	io.Closer
}

type callTarget struct{ method, name string }

// jsonrpcCalls returns the method and target name of each message in a
// JSON-RPC body (one message or a batch). Keys are matched exactly, as go-sdk
// matches them, not case-insensitively as encoding/json would. A body that
// does not parse yields nothing.
func jsonrpcCalls(body []byte) []callTarget {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil
	}
	var raws []json.RawMessage
	if body[0] == '[' {
		if json.Unmarshal(body, &raws) != nil {
			return nil
		}
	} else {
		raws = []json.RawMessage{body}
	}
	var out []callTarget
	for _, raw := range raws {
		var msg map[string]json.RawMessage
		if json.Unmarshal(raw, &msg) != nil {
			continue
		}
		var method string
		if json.Unmarshal(msg["method"], &method) != nil {
			continue
		}
		var params map[string]json.RawMessage
		_ = json.Unmarshal(msg["params"], &params)
		if method == methodListen {
			// One target for each resource it subscribes to; listening
			// only for list changes names none.
			var n map[string]json.RawMessage
			_ = json.Unmarshal(params["notifications"], &n)
			var uris []string
			_ = json.Unmarshal(n["resourceSubscriptions"], &uris)
			for _, uri := range uris {
				out = append(out, callTarget{method, uri})
			}
			continue
		}
		var name string
		key := "name"
		if method == "resources/read" || method == "resources/subscribe" {
			key = "uri"
		}
		_ = json.Unmarshal(params[key], &name)
		out = append(out, callTarget{method, name})
	}
	return out
}
