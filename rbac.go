package mcpauth

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"
)

// A Policy says which callers may use which tools (and, when its rules name
// them, which prompts and resources). A [Guard] enforces it.
//
// A call is allowed by the single rule that matches its tool most
// specifically: an exact name, else the longest matching prefix pattern
// ("db.*"), else "*". A tool no rule matches is denied to everyone. The same
// holds for prompts, and for resources by URI, once at least one rule names a
// prompt or a resource; until then prompts and resources are not guarded.
//
// A Policy is plain data: build it in Go, or load it from JSON or YAML with
// [ParsePolicy] or [LoadPolicy]:
//
//	roles:
//	  admin:  [editor]   # admin has everything editor has
//	  editor: [viewer]
//	  viewer: []
//	rules:
//	  - {tool: read-data,  roles: [viewer], rate_limit: 100/min}
//	  - {tool: write-data, roles: [editor], scopes: [tools:write]}
//	  - {tool: "admin.*",  roles: [admin]}
type Policy struct {
	// Roles declares every role the rules may name, each with the roles it
	// inherits: a role may do whatever the roles it inherits may do, to any
	// depth. A cycle, or an inherited role that is not declared, is an
	// error.
	Roles map[string][]string `json:"roles" yaml:"roles"`
	// Scopes is the scope hierarchy: each scope with the narrower scopes it
	// implies, to any depth. A caller granted "files" when Scopes has
	// "files": {"files:read", "files:write"} satisfies a rule that requires
	// "files:read". Scopes need not be declared; a scope not listed implies
	// only itself. A cycle is an error. Challenges (403
	// insufficient_scope) name the scopes the rule requires, as written.
	Scopes map[string][]string `json:"scopes,omitempty" yaml:"scopes,omitempty"`
	// Rules are the permissions. Two rules with the same pattern are an
	// error.
	Rules []Rule `json:"rules" yaml:"rules"`
}

// A Rule allows callers that hold one of its roles (or a role that inherits
// one) AND every one of its scopes to use what its pattern names. Set exactly
// one of Tool, Prompt and Resource.
type Rule struct {
	// Tool, Prompt or Resource (a URI) is what the rule covers: an exact
	// name, a prefix followed by "*" ("db.*", "file:///public/*"), or "*"
	// for all.
	Tool     string `json:"tool,omitempty" yaml:"tool,omitempty"`
	Prompt   string `json:"prompt,omitempty" yaml:"prompt,omitempty"`
	Resource string `json:"resource,omitempty" yaml:"resource,omitempty"`

	// Roles the caller must hold one of. Empty means no role is required.
	Roles []string `json:"roles,omitempty" yaml:"roles,omitempty"`
	// Scopes the caller must hold all of (OAuth scopes, for example
	// "tools:write"). Empty means no scope is required.
	Scopes []string `json:"scopes,omitempty" yaml:"scopes,omitempty"`
	// AnyCaller allows every authenticated caller. A rule must set Roles,
	// Scopes or AnyCaller, so that an empty rule (a typo in a file) never
	// opens a tool to everyone.
	AnyCaller bool `json:"any_caller,omitempty" yaml:"any_caller,omitempty"`

	// RateLimit limits each caller's use of what the rule covers, written
	// "N/unit" with unit s, min or h: "100/min" is a bucket of 100 calls
	// that refills over a minute. Each caller has one bucket per rule, so
	// the tools a prefix or "*" rule covers share it (a bucket per name
	// would let a caller mint buckets with made-up names and push its own
	// out of the bounded limiter map). Empty means no limit.
	RateLimit string `json:"rate_limit,omitempty" yaml:"rate_limit,omitempty"`
}

// The kinds of things a rule covers.
type kind uint8

const (
	kindTool kind = iota
	kindPrompt
	kindResource
	numKinds

	// kindNone marks a decision on a method, which names no target.
	kindNone kind = 255
)

var kindNames = [numKinds]string{"tool", "prompt", "resource"}

// roleBits is a set of roles, by their index in compiled.roleIndex.
type roleBits []uint64

func (b roleBits) has(i int) bool { return b[i>>6]&(1<<(i&63)) != 0 }
func (b roleBits) set(i int)      { b[i>>6] |= 1 << (i & 63) }

// compiled is a policy in the form the guard decides with: per call, one map
// lookup for the rule, one per role the caller holds, and a bit test.
type compiled struct {
	impliedBy map[string][]string // scope -> the broader scopes that imply it
	roleIndex map[string]int
	roleNames []string
	rules     []*rule
	kinds     [numKinds]ruleSet
}

type ruleSet struct {
	active   bool // some rule names this kind
	exact    map[string]*rule
	prefixes []*rule // longest prefix first
	all      *rule   // "*"
}

// rule is a compiled Rule.
type rule struct {
	index   int
	kind    kind
	pattern string
	prefix  string // pattern without its "*", for prefix rules
	anyRole bool
	allow   roleBits // the roles that satisfy Roles, inheritance included
	scopes  []string
	// satisfy holds, for each of scopes, every scope that satisfies it: the
	// scope itself and the broader ones that imply it (Policy.Scopes).
	satisfy [][]string

	limited bool
	limit   rate.Limit
	burst   int

	// The refusals, built once so that a denial allocates nothing.
	roleErr, scopeErr, bothErr error
}

// lookup returns the rule for name, or nil.
func (s *ruleSet) lookup(name string) *rule {
	if r, ok := s.exact[name]; ok {
		return r
	}
	for _, r := range s.prefixes {
		if strings.HasPrefix(name, r.prefix) {
			return r
		}
	}
	return s.all
}

func compilePolicy(p *Policy) (*compiled, error) {
	if p == nil {
		return nil, errors.New("mcpauth: policy: nil policy")
	}
	c := &compiled{roleIndex: make(map[string]int, len(p.Roles))}
	for name := range p.Roles {
		if strings.TrimSpace(name) == "" || strings.ContainsAny(name, " \t\r\n") {
			return nil, fmt.Errorf("mcpauth: policy: invalid role name %q", name)
		}
		c.roleNames = append(c.roleNames, name)
	}
	sort.Strings(c.roleNames)
	for i, name := range c.roleNames {
		c.roleIndex[name] = i
	}
	closures, err := roleClosures(p.Roles, c.roleNames, c.roleIndex)
	if err != nil {
		return nil, err
	}
	if c.impliedBy, err = scopeHierarchy(p.Scopes); err != nil {
		return nil, err
	}

	for i := range c.kinds {
		c.kinds[i].exact = make(map[string]*rule)
	}
	words := (len(c.roleNames) + 63) / 64
	seen := make(map[[2]string]bool)
	for i, pr := range p.Rules {
		r, err := compileRule(i, &pr, c, closures, words)
		if err != nil {
			return nil, &ruleError{index: i, detail: err.Error()}
		}
		k := [2]string{kindNames[r.kind], r.pattern}
		if seen[k] {
			return nil, &ruleError{index: i, detail: fmt.Sprintf("a second rule for %s %q", kindNames[r.kind], r.pattern)}
		}
		seen[k] = true
		s := &c.kinds[r.kind]
		s.active = true
		switch {
		case r.pattern == "*":
			s.all = r
		case r.prefix != "":
			s.prefixes = append(s.prefixes, r)
		default:
			s.exact[r.pattern] = r
		}
		c.rules = append(c.rules, r)
	}
	for i := range c.kinds {
		slices.SortStableFunc(c.kinds[i].prefixes, func(a, b *rule) int { return len(b.prefix) - len(a.prefix) })
	}
	return c, nil
}

// validScope reports whether s is an RFC 6749 §3.3 scope-token, which may be
// written into a WWW-Authenticate challenge.
func validScope(s string) bool {
	return s != "" && !strings.ContainsFunc(s, func(c rune) bool { return c <= ' ' || c > '~' || c == '"' || c == '\\' })
}

// scopeHierarchy inverts Policy.Scopes: for each scope, the broader scopes
// that imply it, to any depth, sorted.
func scopeHierarchy(implies map[string][]string) (map[string][]string, error) {
	if len(implies) == 0 {
		return nil, nil
	}
	names := make([]string, 0, len(implies))
	for name, narrower := range implies {
		if !validScope(name) {
			return nil, fmt.Errorf("mcpauth: policy: invalid scope %q", name)
		}
		for _, n := range narrower {
			if !validScope(n) {
				return nil, fmt.Errorf("mcpauth: policy: scope %q implies an invalid scope %q", name, n)
			}
		}
		names = append(names, name)
	}
	sort.Strings(names)
	impliedBy := make(map[string][]string)
	for _, broad := range names {
		// Walk what broad implies; meeting broad again is a cycle.
		seen := map[string]bool{}
		var walk func(s string, path []string) error
		walk = func(s string, path []string) error {
			for _, n := range implies[s] {
				if n == broad {
					return fmt.Errorf("mcpauth: policy: scopes imply each other in a cycle: %s", strings.Join(append(path, n), " -> "))
				}
				if seen[n] {
					continue
				}
				seen[n] = true
				if err := walk(n, append(path, n)); err != nil {
					return err
				}
			}
			return nil
		}
		if err := walk(broad, []string{broad}); err != nil {
			return nil, err
		}
		for n := range seen {
			impliedBy[n] = append(impliedBy[n], broad)
		}
	}
	for n := range impliedBy {
		sort.Strings(impliedBy[n])
	}
	return impliedBy, nil
}

// A ruleError is a policy's rule that does not compile. ParsePolicy gives
// it the rule's line.
type ruleError struct {
	index  int // in Policy.Rules
	detail string
}

func (e *ruleError) Error() string {
	return "mcpauth: policy: rule " + strconv.Itoa(e.index+1) + ": " + e.detail
}

// roleClosures returns, for each role, the set of roles it has: itself and
// everything it inherits, to any depth.
func roleClosures(inherits map[string][]string, names []string, index map[string]int) ([]roleBits, error) {
	words := (len(names) + 63) / 64
	closures := make([]roleBits, len(names))
	const (
		unvisited = iota
		visiting
		done
	)
	state := make([]int, len(names))
	var path []string
	var visit func(i int) error
	visit = func(i int) error {
		switch state[i] {
		case done:
			return nil
		case visiting:
			start := slices.Index(path, names[i])
			cycle := append(slices.Clone(path[start:]), names[i])
			return fmt.Errorf("mcpauth: policy: roles inherit in a cycle: %s", strings.Join(cycle, " -> "))
		}
		state[i] = visiting
		path = append(path, names[i])
		set := make(roleBits, words)
		set.set(i)
		for _, parent := range inherits[names[i]] {
			j, ok := index[parent]
			if !ok {
				return fmt.Errorf("mcpauth: policy: role %q inherits %q, which is not declared", names[i], parent)
			}
			if err := visit(j); err != nil {
				return err
			}
			for w := range set {
				set[w] |= closures[j][w]
			}
		}
		path = path[:len(path)-1]
		closures[i] = set
		state[i] = done
		return nil
	}
	for i := range names {
		if err := visit(i); err != nil {
			return nil, err
		}
	}
	return closures, nil
}

func compileRule(i int, pr *Rule, c *compiled, closures []roleBits, words int) (*rule, error) {
	r := &rule{index: i, allow: make(roleBits, words)}
	n := 0
	for k, pattern := range [numKinds]string{pr.Tool, pr.Prompt, pr.Resource} {
		if pattern != "" {
			r.kind, r.pattern = kind(k), pattern
			n++
		}
	}
	if n != 1 {
		return nil, errors.New("set exactly one of tool, prompt and resource")
	}
	if p, ok := strings.CutSuffix(r.pattern, "*"); ok && p != "" {
		if strings.Contains(p, "*") {
			return nil, fmt.Errorf("pattern %q: '*' may only end a pattern", r.pattern)
		}
		r.prefix = p
	} else if !ok && strings.Contains(r.pattern, "*") {
		return nil, fmt.Errorf("pattern %q: '*' may only end a pattern", r.pattern)
	}
	if len(pr.Roles) == 0 && len(pr.Scopes) == 0 && !pr.AnyCaller {
		return nil, fmt.Errorf("%s %q: set roles, scopes or any_caller", kindNames[r.kind], r.pattern)
	}
	if pr.AnyCaller && (len(pr.Roles) > 0 || len(pr.Scopes) > 0) {
		return nil, fmt.Errorf("%s %q: any_caller excludes roles and scopes", kindNames[r.kind], r.pattern)
	}
	r.anyRole = len(pr.Roles) == 0
	for _, role := range pr.Roles {
		j, ok := c.roleIndex[role]
		if !ok {
			return nil, fmt.Errorf("%s %q: unknown role %q (declare it under roles)", kindNames[r.kind], r.pattern, role)
		}
		// Every role that has this one, itself or by inheritance, satisfies it.
		for h, cl := range closures {
			if cl.has(j) {
				r.allow.set(h)
			}
		}
	}
	for _, s := range pr.Scopes {
		// An RFC 6749 §3.3 scope-token: it is written into the
		// WWW-Authenticate challenge of RequireScopes.
		if !validScope(s) {
			return nil, fmt.Errorf("%s %q: invalid scope %q", kindNames[r.kind], r.pattern, s)
		}
	}
	r.scopes = slices.Clone(pr.Scopes)
	r.satisfy = make([][]string, len(r.scopes))
	for i, s := range r.scopes {
		r.satisfy[i] = append([]string{s}, c.impliedBy[s]...)
	}
	if pr.RateLimit != "" {
		limit, burst, err := parseRateLimit(pr.RateLimit)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", kindNames[r.kind], r.pattern, err)
		}
		r.limited, r.limit, r.burst = true, limit, burst
	}

	what := kindNames[r.kind]
	if r.prefix == "" && r.pattern != "*" {
		what += " " + strconv.Quote(r.pattern)
	}
	roles := "role " + strings.Join(pr.Roles, " or ")
	scopes := "scope " + strings.Join(pr.Scopes, " and ")
	if len(pr.Scopes) > 1 {
		scopes = "scopes " + strings.Join(pr.Scopes, " and ")
	}
	r.roleErr = &refusal{class: ErrForbidden, reason: "role", msg: "mcpauth: access denied: " + what + " requires " + roles}
	scopeErr := &ScopeError{Required: r.scopes}
	r.scopeErr = &refusal{class: ErrForbidden, reason: "scope", scope: scopeErr, msg: "mcpauth: access denied: " + what + " requires " + scopes}
	r.bothErr = &refusal{class: ErrForbidden, reason: "role", msg: "mcpauth: access denied: " + what + " requires " + roles + " and " + scopes}
	return r, nil
}

// parseRateLimit reads "N/unit".
func parseRateLimit(s string) (rate.Limit, int, error) {
	num, unit, ok := strings.Cut(s, "/")
	n, err := strconv.Atoi(strings.TrimSpace(num))
	if !ok || err != nil || n <= 0 {
		return 0, 0, fmt.Errorf("rate_limit %q: want N/s, N/min or N/h with N > 0", s)
	}
	var per time.Duration
	switch strings.TrimSpace(unit) {
	case "s", "sec", "second":
		per = time.Second
	case "m", "min", "minute":
		per = time.Minute
	case "h", "hour":
		per = time.Hour
	default:
		return 0, 0, fmt.Errorf("rate_limit %q: want N/s, N/min or N/h with N > 0", s)
	}
	return rate.Every(per / time.Duration(n)), n, nil
}

// held returns the roles p holds that the policy knows, as a set.
func (c *compiled) held(p *Principal) roleBits {
	set := make(roleBits, (len(c.roleNames)+63)/64)
	if p != nil {
		for _, role := range p.Roles {
			if i, ok := c.roleIndex[role]; ok {
				set.set(i)
			}
		}
	}
	return set
}

// allows reports whether p, holding the roles held, may use name. It makes
// the decision decide makes, for filtering a list, where the principal's
// roles are looked up once rather than once per entry.
func (c *compiled) allows(p *Principal, held roleBits, k kind, name string) bool {
	if p == nil {
		return false
	}
	r := c.kinds[k].lookup(name)
	if r == nil {
		return false
	}
	if !r.anyRole {
		ok := false
		for w := range held {
			if held[w]&r.allow[w] != 0 {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return r.hasScopes(p)
}

// hasScopes reports whether p holds every scope of r, itself or through a
// broader scope that implies it.
func (r *rule) hasScopes(p *Principal) bool {
	for _, alternatives := range r.satisfy {
		held := false
		for _, s := range alternatives {
			if p.HasScope(s) {
				held = true
				break
			}
		}
		if !held {
			return false
		}
	}
	return true
}

// decide is the one decision function both enforcement forms share. It does
// not allocate. rate limits are applied by the caller, with the rule it
// returns.
func (c *compiled) decide(p *Principal, k kind, name string) (*rule, error) {
	if p == nil {
		return nil, errUnauthenticated
	}
	if k == kindResource && abnormalURI(name) {
		return nil, errURIForm
	}
	r := c.kinds[k].lookup(name)
	if r == nil {
		return nil, errNoRule[k]
	}
	roleOK := r.anyRole
	if !roleOK {
		for _, role := range p.Roles {
			if i, ok := c.roleIndex[role]; ok && r.allow.has(i) {
				roleOK = true
				break
			}
		}
	}
	scopeOK := r.hasScopes(p)
	switch {
	case roleOK && scopeOK:
		return r, nil
	case scopeOK:
		return r, r.roleErr
	case roleOK:
		return r, r.scopeErr
	default:
		return r, r.bothErr
	}
}
