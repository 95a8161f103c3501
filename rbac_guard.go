package mcpauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpauth/mcpauth/internal/limiter"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// GuardOptions configures [NewGuard]. The zero value is the strict setting.
type GuardOptions struct {
	// Events receives one [Event] per decision (kind authorization):
	// denials, and allowed calls, which the log sink writes at Debug (the
	// authentication event at Info already records who called). Events
	// carry the subject, method, key ID, what was called and the reason;
	// never a credential. Nil (the default) means [LogEvents] on Logger.
	Events EventSink
	// Logger is where the default event sink writes; nil (the default)
	// means slog.Default(), looked up at each event. It is not used when
	// Events is set.
	Logger *slog.Logger

	// MaxRateLimiters caps the number of per-caller rate limiters (one per
	// caller and rate-limited rule) kept in memory, so that a flood of
	// distinct callers cannot exhaust it. The cap is for all callers
	// together: nothing is dropped while there is room. A limiter whose
	// bucket has refilled is dropped first (which changes nothing); when
	// the map is full and none has, the one that will be full soonest is
	// dropped (among rules of one rate, the least recently used), which
	// gives its caller a full bucket early. Zero (the default) means
	// 65,536, some 22 MB at most. Fewer than the policy's rate-limited rules
	// is an error: one caller could then push out its own spent buckets.
	MaxRateLimiters int

	// RateLimiter counts the rules' rate limits instead of the guard's own
	// memory, for example the Redis store of store/redis, so that replicas
	// share each caller's budget (their policies must then list the
	// rate-limited rules in the same order). A limiter that cannot answer
	// refuses the call. Nil (the default) counts in memory, bounded by
	// MaxRateLimiters.
	RateLimiter RateLimiter

	// AllowMethods names the custom methods (added with
	// mcp.AddReceivingCustomMethod) that every authenticated caller may
	// use. The guard cannot tell what a custom method reaches, and go-sdk
	// does not give its handler the request, so the handler cannot read
	// the caller. Zero (the default) denies every method go-sdk v1.8.0
	// does not define, including any a later go-sdk adds (for example
	// tasks, which may hand out tool results) until the guard knows it.
	AllowMethods []string

	// MaxPeekBytes bounds how much of a request body [Guard.RequireScopes]
	// reads to find the method and tool. A larger body goes on unread by it,
	// and the MCP-level guard decides alone. Zero (the default) means 1 MiB.
	MaxPeekBytes int64
}

// A Guard enforces a [Policy] on an MCP server: it denies tools/call (and
// prompts/get, resources/read, resources/subscribe and subscriptions/listen,
// when rules name prompts or resources) to callers the policy does not
// allow, applies the rules' rate limits, and filters tools/list (and the
// prompt and resource lists) down to what each caller may use.
//
// The guard reads the caller with [PrincipalFromRequest], from the MCP request
// being handled, never from a context: in a stateful session a context may
// belong to the session's first HTTP request and carry a credential that has
// since been rotated or downgraded. It treats every authentication method
// alike, and denies a request that carries no principal.
//
// A Guard is safe for concurrent use.
type Guard struct {
	c        *compiled
	events   EventSink
	peek     int64
	limiters *limiter.Map // nil when no rule has a rate limit
	shared   RateLimiter  // GuardOptions.RateLimiter
	methods  []string     // GuardOptions.AllowMethods
	now      func() time.Time

	// wrapped is set once [GuardTool] has wrapped a handler: from then on the
	// middleware marks the calls it has allowed, so that a wrapped handler
	// behind it does not check (and count) them twice.
	wrapped atomic.Bool
	// validating holds the sessions [Guard.Validate] opens, whose lists the
	// middleware passes unfiltered. Only this package can create them.
	validating sync.Map

	// subs are the sessions subscribed to a guarded resource, with their
	// current callers (rbac_notify.go); notifying is set once Install has
	// added the sending middleware that reads them.
	subs      subscribers
	notifying atomic.Bool
	warnOnce  sync.Once
}

// NewGuard compiles the policy. It returns an error for an invalid policy:
// an undeclared role, a cycle of inheritance, a malformed pattern or rate
// limit, two rules for one pattern, or a rule that requires nothing; and for
// a GuardOptions.MaxRateLimiters below the number of rate-limited rules.
func NewGuard(p *Policy, opts *GuardOptions) (*Guard, error) {
	c, err := compilePolicy(p)
	if err != nil {
		return nil, err
	}
	g := &Guard{c: c, peek: 1 << 20, now: time.Now}
	if opts != nil {
		g.events = sinkFor(opts.Events, opts.Logger)
		if opts.MaxPeekBytes > 0 {
			g.peek = opts.MaxPeekBytes
		}
		g.methods = slices.Clone(opts.AllowMethods)
		g.shared = opts.RateLimiter
	}
	limited := 0
	for _, r := range c.rules {
		if r.limited {
			limited++
		}
	}
	if limited > 0 {
		n := 65536
		if opts != nil && opts.MaxRateLimiters > 0 {
			n = opts.MaxRateLimiters
		}
		if n < limited {
			// One caller calling every limited tool would fill the map
			// and push out its own spent buckets, which come back full.
			return nil, fmt.Errorf("mcpauth: GuardOptions.MaxRateLimiters is %d, fewer than the policy's %d rate-limited rules", n, limited)
		}
		g.limiters = limiter.New(n, func() time.Time { return g.now() })
	}
	return g, nil
}

// Check reports whether p may call the tool, ignoring rate limits: nil, or an
// error wrapping [ErrForbidden] (and a [ScopeError] when only scopes are
// missing) or [ErrNoCredentials] for a nil principal. Its text says what the
// tool requires, for example "requires role editor".
func (g *Guard) Check(p *Principal, tool string) error {
	_, err := g.c.decide(p, kindTool, tool)
	return err
}

// guardedKey marks the context of a call the guard g has allowed; its value
// is the allowed *mcp.CallToolRequest. A wrapped handler skips its check
// only for the tool that request names: a tool that calls other wrapped
// handlers with its own context (a composite tool) does not lend them its
// permission.
type guardedKey struct{ g *Guard }

// Middleware returns go-sdk receiving middleware that enforces the policy.
// [Guard.Install] adds it to a server together with the filter of resource
// notifications; added alone (Server.AddReceivingMiddleware), it leaves
// notifications/resources/updated unfiltered, and says so with a
// configuration event at the first subscription to a guarded resource.
//
// A denied tools/call gets a tool error (IsError) whose text says what the
// tool requires; a call over its rate limit gets one that says when to retry.
// A denied prompts/get, resources/read, resources/subscribe,
// subscriptions/listen (for a resource) or completion/complete (of a
// prompt's or resource's arguments) gets a JSON-RPC invalid-params error
// with the same text, and so does a method go-sdk does not define, unless
// GuardOptions.AllowMethods names it. List results are
// filtered per caller and marked cacheScope "private"; see docs/rbac.md for
// how that is read under each protocol version.
func (g *Guard) Middleware() mcp.Middleware {
	return func(next mcp.MethodHandler) mcp.MethodHandler {
		return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
			if g.subs.n.Load() > 0 {
				g.subs.update(req.GetSession(), PrincipalFromRequest(req))
			}
			switch method {
			case "tools/call":
				var name string
				if r, ok := req.(*mcp.CallToolRequest); ok && r.Params != nil {
					name = r.Params.Name
				}
				if err := g.authorize(ctx, req, kindTool, name); err != nil {
					res := &mcp.CallToolResult{}
					res.SetError(err)
					return res, nil
				}
				if r, ok := req.(*mcp.CallToolRequest); ok && g.wrapped.Load() {
					ctx = context.WithValue(ctx, guardedKey{g}, r)
				}
				return next(ctx, method, req)
			case "tools/list":
				return g.filterList(ctx, method, req, next, kindTool)
			case "prompts/get", "resources/read", "resources/subscribe":
				k := kindPrompt
				if method != "prompts/get" {
					k = kindResource
				}
				if !g.c.kinds[k].active {
					break
				}
				var name string
				switch r := req.(type) {
				case *mcp.GetPromptRequest:
					if r.Params != nil {
						name = r.Params.Name
					}
				case *mcp.ReadResourceRequest:
					if r.Params != nil {
						name = r.Params.URI
					}
				case *mcp.SubscribeRequest:
					if r.Params != nil {
						name = r.Params.URI
					}
				}
				if err := g.authorize(ctx, req, k, name); err != nil {
					return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: err.Error()}
				}
				if method == "resources/subscribe" {
					res, err := next(ctx, method, req)
					if err == nil {
						g.subscribed(ctx, req)
					}
					return res, err
				}
				if method == "resources/read" {
					// A guarded resource is not for everyone: no intermediary
					// may serve it to another caller (2026-07-28 cacheScope).
					res, err := next(ctx, method, req)
					if rr, ok := res.(*mcp.ReadResourceResult); ok && err == nil {
						out := *rr
						out.CacheScope = "private"
						return &out, nil
					}
					return res, err
				}
			case methodListen:
				// Under 2026-07-28 a client subscribes to resources here
				// (go-sdk's ClientSession.Subscribe sends it), and go-sdk
				// subscribes each URI itself, past this middleware: decide
				// each as resources/subscribe is decided.
				if !g.c.kinds[kindResource].active {
					break
				}
				r, ok := req.(*mcp.SubscriptionsListenRequest)
				if !ok || r.Params == nil || r.Params.Notifications == nil {
					break
				}
				for _, uri := range r.Params.Notifications.ResourceSubscriptions {
					if err := g.authorize(ctx, req, kindResource, uri); err != nil {
						return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: err.Error()}
					}
				}
				if len(r.Params.Notifications.ResourceSubscriptions) > 0 {
					// Before next, which holds the call open while the
					// subscriptions last.
					g.subscribed(ctx, req)
				}
			case "completion/complete":
				// Completing a prompt's or resource's arguments is a way to
				// probe it: allowed only to callers that may use it. It is not
				// counted against the rule's rate limit.
				r, ok := req.(*mcp.CompleteRequest)
				if !ok || r.Params == nil || r.Params.Ref == nil {
					break
				}
				k, name := kindPrompt, r.Params.Ref.Name
				if r.Params.Ref.Type == "ref/resource" {
					k, name = kindResource, r.Params.Ref.URI
				}
				if !g.c.kinds[k].active {
					break
				}
				p := PrincipalFromRequest(req)
				if _, err := g.c.decide(p, k, name); err != nil {
					audit(ctx, g.events, "mcp", method, p, k, name, err)
					return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: err.Error()}
				}
			case "prompts/list":
				if g.c.kinds[kindPrompt].active {
					return g.filterList(ctx, method, req, next, kindPrompt)
				}
			case "resources/list", "resources/templates/list":
				if g.c.kinds[kindResource].active {
					return g.filterList(ctx, method, req, next, kindResource)
				}
			default:
				if !standardMethods[method] {
					// A custom method, or one a later go-sdk defines.
					p := PrincipalFromRequest(req)
					if p == nil || !slices.Contains(g.methods, method) {
						err := errMethod
						if p == nil {
							err = errUnauthenticated
						}
						audit(ctx, g.events, "mcp", method, p, kindNone, "", err)
						return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: err.Error()}
					}
				}
			}
			return next(ctx, method, req)
		}
	}
}

// standardMethods are the methods a go-sdk v1.8.0 server receives. Those
// the middleware does not decide carry no tool, prompt or resource a rule
// could name (initialize, ping, logging/setLevel, server/discover,
// resources/unsubscribe, notifications); any other method is refused unless
// GuardOptions.AllowMethods names it.
var standardMethods = map[string]bool{
	"initialize": true, "ping": true, "server/discover": true, "logging/setLevel": true,
	"tools/list": true, "tools/call": true,
	"prompts/list": true, "prompts/get": true, "completion/complete": true,
	"resources/list": true, "resources/templates/list": true, "resources/read": true,
	"resources/subscribe": true, "resources/unsubscribe": true, "subscriptions/listen": true,
	"notifications/initialized": true, "notifications/cancelled": true,
	"notifications/progress": true, "notifications/roots/list_changed": true,
}

var errMethod = &refusal{class: ErrForbidden, reason: "method", msg: "mcpauth: access denied: the guard does not allow this method"}

// GuardTool wraps one typed tool handler with the guard, for servers that
// guard some tools rather than install [Guard.Middleware]. It makes the same
// decision as the middleware, with the name the call was made with, and
// reports a refusal as a tool error. Behind the middleware it does not check
// a call again. It does not filter tools/list: only the middleware can.
//
// go-sdk validates a call's arguments before it runs the handler, so a caller
// the wrapper refuses may still learn from a validation error what arguments
// the tool takes; the middleware decides before that.
func GuardTool[In, Out any](g *Guard, h mcp.ToolHandlerFor[In, Out]) mcp.ToolHandlerFor[In, Out] {
	g.wrapped.Store(true)
	return func(ctx context.Context, req *mcp.CallToolRequest, in In) (*mcp.CallToolResult, Out, error) {
		if by, _ := ctx.Value(guardedKey{g}).(*mcp.CallToolRequest); by == nil || by.Params == nil ||
			req == nil || req.Params == nil || by.Params.Name != req.Params.Name {
			var name string
			if req != nil && req.Params != nil {
				name = req.Params.Name
			}
			var r mcp.Request
			if req != nil {
				r = req
			}
			if err := g.authorize(ctx, r, kindTool, name); err != nil {
				// A plain error becomes a tool error with err's text.
				var zero Out
				return nil, zero, err
			}
		}
		return h(ctx, req, in)
	}
}

// authorize decides one call and applies its rule's rate limit.
func (g *Guard) authorize(ctx context.Context, req mcp.Request, k kind, name string) error {
	p := PrincipalFromRequest(req)
	r, err := g.c.decide(p, k, name)
	if err == nil && r.limited {
		// The session identity go-sdk uses, already built for the request:
		// reading it allocates nothing.
		id := req.GetExtra().TokenInfo.UserID
		if id == "" {
			id = p.UserID()
		}
		if g.shared != nil {
			err = sharedRateLimit(ctx, g.shared, k, r.index, id, r.limit, r.burst)
		} else if ok, retry := g.limiters.Take(limiter.Key{Rule: r.index, ID: id}, r.limit, r.burst); !ok {
			err = rateLimitError(k, retry)
		}
	}
	if err != nil {
		audit(ctx, g.events, "mcp", "", p, k, name, err)
		return err
	}
	audit(ctx, g.events, "mcp", "", p, k, name, nil)
	return nil
}

func rateLimitError(k kind, retry time.Duration) error {
	secs := int64((retry + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	return &refusal{
		class:      ErrRateLimited,
		reason:     "rate_limited",
		msg:        "mcpauth: rate limit exceeded for this " + kindNames[k] + ": retry after " + strconv.FormatInt(secs, 10) + "s",
		retryAfter: retry,
	}
}

// filterList runs a list method and keeps what the caller may use.
func (g *Guard) filterList(ctx context.Context, method string, req mcp.Request, next mcp.MethodHandler, k kind) (mcp.Result, error) {
	res, err := next(ctx, method, req)
	if err != nil || res == nil {
		return res, err
	}
	if req != nil {
		if _, ok := g.validating.Load(req.GetSession()); ok {
			return res, nil
		}
	}
	p := PrincipalFromRequest(req)
	held := g.c.held(p)
	allowed := func(name string) bool { return g.c.allows(p, held, k, name) }
	fetch := func(cursor string) (mcp.Result, error) {
		// The next page: the same request with the page's cursor.
		var next2 mcp.Request
		switch r := req.(type) {
		case *mcp.ListToolsRequest:
			next2 = withCursor(r, func(p *mcp.ListToolsParams) { p.Cursor = cursor })
		case *mcp.ListPromptsRequest:
			next2 = withCursor(r, func(p *mcp.ListPromptsParams) { p.Cursor = cursor })
		case *mcp.ListResourcesRequest:
			next2 = withCursor(r, func(p *mcp.ListResourcesParams) { p.Cursor = cursor })
		case *mcp.ListResourceTemplatesRequest:
			next2 = withCursor(r, func(p *mcp.ListResourceTemplatesParams) { p.Cursor = cursor })
		default:
			return nil, errCannotPage
		}
		return next(ctx, method, next2)
	}
	switch r := res.(type) {
	case *mcp.ListToolsResult:
		return filterResult(r, func(r *mcp.ListToolsResult) (*[]*mcp.Tool, *string, *string) {
			return &r.Tools, &r.NextCursor, &r.CacheScope
		}, func(t *mcp.Tool) string { return t.Name }, allowed, fetch)
	case *mcp.ListPromptsResult:
		return filterResult(r, func(r *mcp.ListPromptsResult) (*[]*mcp.Prompt, *string, *string) {
			return &r.Prompts, &r.NextCursor, &r.CacheScope
		}, func(t *mcp.Prompt) string { return t.Name }, allowed, fetch)
	case *mcp.ListResourcesResult:
		return filterResult(r, func(r *mcp.ListResourcesResult) (*[]*mcp.Resource, *string, *string) {
			return &r.Resources, &r.NextCursor, &r.CacheScope
		}, func(t *mcp.Resource) string { return t.URI }, allowed, fetch)
	case *mcp.ListResourceTemplatesResult:
		return filterResult(r, func(r *mcp.ListResourceTemplatesResult) (*[]*mcp.ResourceTemplate, *string, *string) {
			return &r.ResourceTemplates, &r.NextCursor, &r.CacheScope
		}, func(t *mcp.ResourceTemplate) string { return t.URITemplate }, allowed, fetch)
	}
	// A list result of a type this version does not know: show nothing
	// rather than everything.
	return nil, errCannotFilter(method)
}

// filterResult returns a copy of the list result first, holding only the
// entries the caller may use, marked private to the caller. fields points
// into a result at its entries, its nextCursor and its cacheScope. The
// result is copied, never changed in place: a server may hand the same one
// to every caller.
func filterResult[R any, PR interface {
	*R
	mcp.Result
}, T any](first PR, fields func(PR) (*[]T, *string, *string), name func(T) string, allowed func(string) bool, fetch func(cursor string) (mcp.Result, error)) (mcp.Result, error) {
	out := PR(new(R))
	*out = *first
	entries, cursor, scope := fields(out)
	var err error
	*entries, *cursor, err = filterPages(*entries, *cursor, name, allowed, func(c string) ([]T, string, error) {
		res, err := fetch(c)
		page, ok := res.(PR)
		if err != nil || !ok || page == nil {
			return nil, "", pageError(err)
		}
		e, next, _ := fields(page)
		return *e, *next, nil
	})
	if err != nil {
		return nil, err
	}
	*scope = "private"
	return out, nil
}

var errCannotPage = errors.New("mcpauth: cannot page")

func errCannotFilter(method string) error {
	return &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "mcpauth: cannot filter " + method}
}

// pageError is the error to answer when fetching a following page failed.
func pageError(err error) error {
	if err == nil || err == errCannotPage {
		return &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "mcpauth: cannot filter the list"}
	}
	return err
}

// withCursor returns a copy of a list request with set applied to a copy
// of its params.
func withCursor[P any, PP interface {
	*P
	mcp.Params
}](r *mcp.ServerRequest[PP], set func(PP)) *mcp.ServerRequest[PP] {
	p := PP(new(P))
	if r.Params != nil {
		*p = *r.Params
	}
	set(p)
	return &mcp.ServerRequest[PP]{Session: r.Session, Params: p, Extra: r.Extra}
}

// filterPages keeps the entries the caller may use. go-sdk's nextCursor
// names the last entry of its page (it is that entry's name, gob-encoded
// and in base64), so a page that ends on an entry the caller may not use
// cannot hand its cursor on: the following pages are fetched and filtered
// too, until one ends on an entry the caller may use, or the list ends.
// The caller gets a longer page instead of a forbidden name.
func filterPages[T any](entries []T, cursor string, name func(T) string, allowed func(string) bool, fetch func(cursor string) ([]T, string, error)) ([]T, string, error) {
	out := keep(entries, func(e T) bool { return allowed(name(e)) })
	for cursor != "" {
		if len(entries) == 0 {
			// No entry to continue after: end the list here.
			return out, "", nil
		}
		if allowed(name(entries[len(entries)-1])) {
			break
		}
		var err error
		entries, cursor, err = fetch(cursor)
		if err != nil {
			return nil, "", err
		}
		for _, e := range entries {
			if allowed(name(e)) {
				out = append(out, e)
			}
		}
	}
	return out, cursor, nil
}

func keep[T any](in []T, ok func(T) bool) []T {
	out := make([]T, 0, len(in))
	for _, v := range in {
		if ok(v) {
			out = append(out, v)
		}
	}
	return out
}

// audit reports the guard's decision on name, of kind k (kindNone for a
// method), as an authorization event.
func audit(ctx context.Context, sink EventSink, layer, rpcMethod string, p *Principal, k kind, name string, err error) {
	e := Event{Kind: EventAuthorization, Outcome: OutcomeSuccess, Layer: layer, RPCMethod: rpcMethod}
	if err != nil {
		e.Outcome, e.Reason = OutcomeDenied, "forbidden"
		if f := (*refusal)(nil); errors.As(err, &f) && f.reason != "" {
			e.Reason = f.reason
		}
	}
	if k != kindNone {
		e.TargetKind, e.Target = kindNames[k], name
	}
	if p != nil {
		e.Method, e.Issuer, e.Subject, e.KeyID, e.ClientID = p.Method, p.Issuer, p.Subject, p.KeyID, p.ClientID
	}
	emit(ctx, sink, e)
}

// Validate compares the policy with what server offers. It returns an error
// naming each rule for a tool, prompt or resource the server does not have
// (most often a typo, which would leave the real one denied to everyone).
// It reports a configuration event, through the guard's sink, for each tool no rule
// covers (denied to every caller) and each prefix rule that matches nothing.
// Call it at start-up, after the server's tools are added.
//
// Validate lists the server's features through an in-memory client session,
// which the guard's own middleware recognises and does not filter.
func (g *Guard) Validate(ctx context.Context, server *mcp.Server) error {
	ct, st := mcp.NewInMemoryTransports()
	ss, err := server.Connect(ctx, st, nil)
	if err != nil {
		return fmt.Errorf("mcpauth: validate: %w", err)
	}
	g.validating.Store(mcp.Session(ss), struct{}{})
	defer g.validating.Delete(mcp.Session(ss))
	defer ss.Close()
	client := mcp.NewClient(&mcp.Implementation{Name: "mcpauth-validate", Version: "1"}, nil)
	cs, err := client.Connect(ctx, ct, nil)
	if err != nil {
		return fmt.Errorf("mcpauth: validate: %w", err)
	}
	defer cs.Close()

	var names [numKinds][]string
	caps := cs.InitializeResult().Capabilities
	if caps != nil && caps.Tools != nil {
		for t, err := range cs.Tools(ctx, nil) {
			if err != nil {
				return fmt.Errorf("mcpauth: validate: listing tools: %w", err)
			}
			names[kindTool] = append(names[kindTool], t.Name)
		}
	}
	if caps != nil && caps.Prompts != nil {
		for p, err := range cs.Prompts(ctx, nil) {
			if err != nil {
				return fmt.Errorf("mcpauth: validate: listing prompts: %w", err)
			}
			names[kindPrompt] = append(names[kindPrompt], p.Name)
		}
	}
	if caps != nil && caps.Resources != nil {
		for r, err := range cs.Resources(ctx, nil) {
			if err != nil {
				return fmt.Errorf("mcpauth: validate: listing resources: %w", err)
			}
			names[kindResource] = append(names[kindResource], r.URI)
		}
		for r, err := range cs.ResourceTemplates(ctx, nil) {
			if err != nil {
				return fmt.Errorf("mcpauth: validate: listing resource templates: %w", err)
			}
			names[kindResource] = append(names[kindResource], r.URITemplate)
		}
	}
	errs, warnings := g.c.validate(names)
	for _, w := range warnings {
		emit(ctx, g.events, Event{Kind: EventConfiguration, Outcome: OutcomeFailure, Reason: "policy", Detail: w})
	}
	if len(errs) > 0 {
		return fmt.Errorf("mcpauth: policy does not match the server: %w", errors.Join(errs...))
	}
	return nil
}

// validate compares the rules with the names the server offers.
func (c *compiled) validate(names [numKinds][]string) (errs []error, warnings []string) {
	for _, r := range c.rules {
		switch {
		case r.pattern == "*":
			if len(names[r.kind]) == 0 {
				warnings = append(warnings, fmt.Sprintf("rule %d: the server has no %ss", r.index+1, kindNames[r.kind]))
			}
		case r.prefix != "":
			matched := false
			for _, n := range names[r.kind] {
				if len(n) >= len(r.prefix) && n[:len(r.prefix)] == r.prefix {
					matched = true
					break
				}
			}
			if !matched {
				warnings = append(warnings, fmt.Sprintf("rule %d: %s pattern %q matches nothing the server has", r.index+1, kindNames[r.kind], r.pattern))
			}
		default:
			found := false
			for _, n := range names[r.kind] {
				if n == r.pattern {
					found = true
					break
				}
			}
			if !found {
				errs = append(errs, fmt.Errorf("rule %d: the server has no %s %q", r.index+1, kindNames[r.kind], r.pattern))
			}
		}
	}
	for k := range numKinds {
		// Tools are always guarded; prompts and resources once a rule names
		// them.
		if k != kindTool && !c.kinds[k].active {
			continue
		}
		for _, n := range names[k] {
			if c.kinds[k].lookup(n) == nil {
				warnings = append(warnings, fmt.Sprintf("no rule covers %s %q: it is denied to every caller", kindNames[k], n))
			}
		}
	}
	return errs, warnings
}

// CheckRoles returns an error naming each of roles that the policy does not
// declare. Call it at start-up with the roles your credentials carry (the
// roles of your API keys, the role claims you expect in tokens): a principal
// with a misspelt role is not an error at run time, it is just given nothing.
func (g *Guard) CheckRoles(roles ...string) error {
	var unknown []string
	for _, r := range roles {
		if _, ok := g.c.roleIndex[r]; !ok && !slices.Contains(unknown, r) {
			unknown = append(unknown, r)
		}
	}
	if len(unknown) > 0 {
		return fmt.Errorf("mcpauth: the policy does not declare the roles %q", unknown)
	}
	return nil
}
