package mcpauth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
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

// ParsePolicy reads a policy in JSON (when the text starts with '{') or
// YAML, and validates it as [NewGuard] does. Unknown fields, a key given
// twice in one object and a second YAML document are errors, so that
// nothing in the file is silently ignored. An error names the line and
// column of what is wrong and says it in the policy's terms:
//
//	mcpauth: policy line 4, column 5: unknown field "role" in a rule (did you mean "roles"?)
func ParsePolicy(data []byte) (*Policy, error) {
	var p Policy
	var rules []textPos // where each rule starts
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '{' {
		w := &jsonPolicy{data: data, dec: json.NewDecoder(bytes.NewReader(data))}
		if err := w.check(); err != nil {
			return nil, err
		}
		rules = w.rules
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&p); err != nil {
			// check lets through nothing Decode refuses.
			return nil, fmt.Errorf("mcpauth: policy: %w", err)
		}
	} else {
		dec := yaml.NewDecoder(bytes.NewReader(data))
		var doc yaml.Node
		if err := dec.Decode(&doc); err != nil {
			if errors.Is(err, io.EOF) {
				return nil, errPolicyEmpty
			}
			return nil, yamlError(data, err)
		}
		// A second document would be ignored, and with it every rule it
		// holds: an exact rule lost leaves a broader prefix rule to allow
		// what it was written to deny.
		var more yaml.Node
		if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
			if err == nil && more.Line > 0 {
				return nil, fmt.Errorf("mcpauth: policy line %d: a second YAML document (a policy is one document)", more.Line)
			}
			return nil, errors.New("mcpauth: policy: more than one YAML document")
		}
		w := &yamlPolicy{done: map[yamlVisit]bool{}}
		if err := w.check(&doc); err != nil {
			return nil, err
		}
		rules = w.rules
		if err := doc.Decode(&p); err != nil {
			return nil, yamlError(data, err)
		}
	}
	if _, err := compilePolicy(&p); err != nil {
		var re *ruleError
		if errors.As(err, &re) && re.index < len(rules) {
			at := rules[re.index]
			return nil, fmt.Errorf("mcpauth: policy line %d, column %d: rule %d: %s", at.line, at.col, re.index+1, re.detail)
		}
		return nil, err
	}
	return &p, nil
}

var errPolicyEmpty = errors.New("mcpauth: policy is empty")

// textPos is a place in a policy file, 1-based.
type textPos struct{ line, col int }

// The fields of a policy and of a rule, for the checks of a policy file
// against the Policy and Rule types, which say what is wrong in the file's
// words rather than Go's.
type fieldKind uint8

const (
	fieldString fieldKind = iota
	fieldNames            // a list of strings
	fieldBool
	fieldRoles // role name -> the roles it inherits
	fieldRules // a list of rules
)

type policyField struct {
	name string
	kind fieldKind
	what string // for fieldNames: what the list holds
}

var (
	topFields  = []policyField{{"roles", fieldRoles, ""}, {"rules", fieldRules, ""}}
	ruleFields = []policyField{{"tool", fieldString, ""}, {"prompt", fieldString, ""}, {"resource", fieldString, ""},
		{"roles", fieldNames, "role names"}, {"scopes", fieldNames, "scope names"}, {"any_caller", fieldBool, ""},
		{"rate_limit", fieldString, ""}}
)

// must says what a value of f must be; mapping is "mapping" or "object".
func (f policyField) must(mapping string) string {
	switch f.kind {
	case fieldNames:
		return fmt.Sprintf("%q must be a list of %s", f.name, f.what)
	case fieldBool:
		return fmt.Sprintf("%q must be true or false", f.name)
	case fieldRoles:
		return fmt.Sprintf("%q must be a %s of role names to the roles each inherits", f.name, mapping)
	case fieldRules:
		return fmt.Sprintf("%q must be a list of rules", f.name)
	}
	return fmt.Sprintf("%q must be a string", f.name)
}

// unknownField says that name is not one of fields, and which it may have
// been meant for.
func unknownField(name, where string, fields []policyField) string {
	best, dist := "", 3 // suggest a field at most two edits away
	for _, f := range fields {
		if d := editDistance(strings.ToLower(name), f.name); d < dist {
			best, dist = f.name, d
		}
	}
	if best != "" {
		return fmt.Sprintf("unknown field %q %s (did you mean %q?)", name, where, best)
	}
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.name
	}
	return fmt.Sprintf("unknown field %q %s (the fields are %s)", name, where, strings.Join(names, ", "))
}

// editDistance is the Levenshtein distance of two short strings.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// jsonPolicy checks a JSON policy token by token, with the place of each.
type jsonPolicy struct {
	data  []byte
	dec   *json.Decoder
	rules []textPos
}

func (w *jsonPolicy) check() error {
	tok, off, err := w.token()
	if err != nil {
		return w.syntax(err)
	}
	if tok != json.Delim('{') {
		return w.fail(off, `the policy must be an object with "roles" and "rules"`)
	}
	if err := w.object(func(key string, off int) error {
		f, ok := w.field(key, topFields)
		if !ok {
			return w.fail(off, "%s", unknownField(key, "at the top level", topFields))
		}
		return w.value(f)
	}); err != nil {
		return err
	}
	off = w.pos()
	if _, err := w.dec.Token(); !errors.Is(err, io.EOF) {
		return w.fail(off, "data after the JSON object")
	}
	return nil
}

// field finds key among fields as encoding/json does, regardless of case.
func (w *jsonPolicy) field(key string, fields []policyField) (policyField, bool) {
	for _, f := range fields {
		if foldKey(key) == foldKey(f.name) {
			return f, true
		}
	}
	return policyField{}, false
}

// object reads the members of an object whose '{' has been read, calling
// member for each key with its place; member reads the value.
// encoding/json keeps the last of two equal keys without a word
// ({"roles":["admin"],"roles":["user"]} would open a tool meant for admins
// to users), and matches field names regardless of case (ROLES and roleſ
// are roles), so keys given twice, compared folded, are an error. Role
// names differing only in case are refused with them, which is no loss.
func (w *jsonPolicy) object(member func(key string, off int) error) error {
	seen := map[string]int{}
	for {
		tok, off, err := w.token()
		if err != nil {
			return w.syntax(err)
		}
		if tok == json.Delim('}') {
			return nil
		}
		key, _ := tok.(string)
		k := foldKey(key)
		if first, dup := seen[k]; dup {
			at := w.position(first)
			return w.fail(off, "key %q given twice in one object (first at line %d, column %d; JSON keys are matched regardless of case)", key, at.line, at.col)
		}
		seen[k] = off
		if err := member(key, off); err != nil {
			return err
		}
	}
}

// value reads the value of field f.
func (w *jsonPolicy) value(f policyField) error {
	tok, off, err := w.token()
	if err != nil {
		return w.syntax(err)
	}
	if tok == nil {
		return nil // null leaves the field empty
	}
	switch f.kind {
	case fieldString:
		if _, ok := tok.(string); ok {
			return nil
		}
	case fieldBool:
		if _, ok := tok.(bool); ok {
			return nil
		}
	case fieldNames:
		if tok == json.Delim('[') {
			return w.names(f.must("object"))
		}
	case fieldRoles:
		if tok == json.Delim('{') {
			return w.object(func(role string, _ int) error {
				tok, off, err := w.token()
				if err != nil {
					return w.syntax(err)
				}
				must := fmt.Sprintf("role %q must be a list of the roles it inherits", role)
				if tok == nil {
					return nil
				}
				if tok != json.Delim('[') {
					return w.fail(off, "%s", must)
				}
				return w.names(must)
			})
		}
	case fieldRules:
		if tok == json.Delim('[') {
			return w.ruleList()
		}
	}
	return w.fail(off, "%s", f.must("object"))
}

// names reads a list of strings whose '[' has been read.
func (w *jsonPolicy) names(must string) error {
	for {
		tok, off, err := w.token()
		if err != nil {
			return w.syntax(err)
		}
		if tok == json.Delim(']') {
			return nil
		}
		if _, ok := tok.(string); !ok {
			return w.fail(off, "%s", must)
		}
	}
}

// ruleList reads the rules, a list whose '[' has been read.
func (w *jsonPolicy) ruleList() error {
	for {
		tok, off, err := w.token()
		if err != nil {
			return w.syntax(err)
		}
		if tok == json.Delim(']') {
			return nil
		}
		if tok != json.Delim('{') {
			return w.fail(off, "a rule must be an object")
		}
		w.rules = append(w.rules, w.position(off))
		if err := w.object(func(key string, off int) error {
			f, ok := w.field(key, ruleFields)
			if !ok {
				return w.fail(off, "%s", unknownField(key, "in a rule", ruleFields))
			}
			return w.value(f)
		}); err != nil {
			return err
		}
	}
}

// pos is where the next token starts.
func (w *jsonPolicy) pos() int {
	off := int(w.dec.InputOffset())
	for off < len(w.data) && strings.IndexByte(" \t\r\n,:", w.data[off]) >= 0 {
		off++
	}
	return off
}

// token reads the next token and where it starts.
func (w *jsonPolicy) token() (json.Token, int, error) {
	off := w.pos()
	tok, err := w.dec.Token()
	return tok, off, err
}

func (w *jsonPolicy) position(off int) textPos {
	before := w.data[:min(off, len(w.data))]
	line := 1 + bytes.Count(before, []byte{'\n'})
	return textPos{line, 1 + utf8.RuneCount(before[bytes.LastIndexByte(before, '\n')+1:])}
}

func (w *jsonPolicy) fail(off int, format string, args ...any) error {
	at := w.position(off)
	return fmt.Errorf("mcpauth: policy line %d, column %d: "+format, append([]any{at.line, at.col}, args...)...)
}

// syntax turns a JSON syntax error into the policy's words, at its place.
func (w *jsonPolicy) syntax(err error) error {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		off := int(se.Offset) // the offending byte, as Decoder.Token counts
		msg := se.Error()
		if rest, ok := strings.CutPrefix(msg, "invalid character "); ok {
			c, ctx, _ := strings.Cut(rest, " ")
			expect := map[string]string{
				"looking for beginning of object key string": "expected a key in double quotes (is there a comma before it?)",
				"looking for beginning of value":             "expected a value (is there a comma before it?)",
				"after object key":                           "expected ':' after the key",
				"after object key:value pair":                "expected ',' or '}'",
				"after array element":                        "expected ',' or ']'",
				"in string literal":                          "a control character in a string",
			}[ctx]
			if strings.HasPrefix(ctx, "in literal ") {
				expect = "expected true, false or null"
			}
			msg = "unexpected " + c
			if expect != "" {
				msg += ": " + expect
			}
		}
		return w.fail(off, "invalid JSON: %s", msg)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return w.fail(len(w.data), "invalid JSON: the text ends before every object and list is closed")
	}
	return fmt.Errorf("mcpauth: policy: %w", err)
}

// yamlPolicy checks a YAML policy node by node, with the place of each.
type yamlPolicy struct {
	// done holds the nodes checked, so that a node an alias names many
	// times is checked once.
	done  map[yamlVisit]bool
	rules []textPos
}

type yamlVisit struct {
	n *yaml.Node
	k fieldKind
}

func (w *yamlPolicy) check(doc *yaml.Node) error {
	n := doc
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return errPolicyEmpty
		}
		n = n.Content[0]
	}
	n = yamlResolve(n)
	if yamlNull(n) {
		return errPolicyEmpty
	}
	if n.Kind != yaml.MappingNode {
		return yamlFail(n, `the policy must be a mapping with "roles" and "rules"`)
	}
	return w.pairs(n, func(k, v *yaml.Node) error {
		f, ok := yamlField(k.Value, topFields)
		if !ok {
			return yamlFail(k, "%s", unknownField(k.Value, "at the top level", topFields))
		}
		return w.value(f, v)
	})
}

func yamlField(key string, fields []policyField) (policyField, bool) {
	for _, f := range fields {
		if key == f.name {
			return f, true
		}
	}
	return policyField{}, false
}

// pairs calls each for the keys and values of mapping n, those of the
// mappings it merges ("<<: *base") included. A key given twice is an error.
func (w *yamlPolicy) pairs(n *yaml.Node, each func(k, v *yaml.Node) error) error {
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := yamlResolve(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return yamlFail(k, "a key must be a name")
		}
		if k.ShortTag() == "!!merge" {
			if err := w.merge(v, each); err != nil {
				return err
			}
			continue
		}
		if first := seen[k.Value]; first != nil {
			return yamlFail(k, "%q given twice (first at line %d)", k.Value, first.Line)
		}
		seen[k.Value] = k
		if err := each(k, v); err != nil {
			return err
		}
	}
	return nil
}

func (w *yamlPolicy) merge(v *yaml.Node, each func(k, v *yaml.Node) error) error {
	v = yamlResolve(v)
	list := []*yaml.Node{v}
	if v.Kind == yaml.SequenceNode {
		list = v.Content
	}
	for _, m := range list {
		m = yamlResolve(m)
		if m.Kind != yaml.MappingNode {
			return yamlFail(m, "<< must merge a mapping or a list of mappings")
		}
		// A merge that names its own mapping is refused by the
		// decoder; checking it once is enough.
		if w.done[yamlVisit{m, 255}] {
			continue
		}
		w.done[yamlVisit{m, 255}] = true
		if err := w.pairs(m, each); err != nil {
			return err
		}
	}
	return nil
}

// value checks the value v of field f.
func (w *yamlPolicy) value(f policyField, v *yaml.Node) error {
	v = yamlResolve(v)
	if yamlNull(v) {
		return nil // null leaves the field empty
	}
	switch f.kind {
	case fieldString:
		if v.Kind == yaml.ScalarNode {
			return nil
		}
	case fieldBool:
		if v.Kind == yaml.ScalarNode && v.ShortTag() == "!!bool" {
			return nil
		}
	case fieldNames:
		if v.Kind == yaml.SequenceNode {
			return w.names(v, f.must("mapping"))
		}
	case fieldRoles:
		if v.Kind == yaml.MappingNode {
			if w.visit(v, f.kind) {
				return nil
			}
			return w.pairs(v, func(k, v *yaml.Node) error {
				must := fmt.Sprintf("role %q must be a list of the roles it inherits", k.Value)
				if v = yamlResolve(v); yamlNull(v) {
					return nil
				}
				if v.Kind != yaml.SequenceNode {
					return yamlFail(v, "%s", must)
				}
				return w.names(v, must)
			})
		}
	case fieldRules:
		if v.Kind == yaml.SequenceNode {
			for _, r := range v.Content {
				r = yamlResolve(r)
				if r.Kind != yaml.MappingNode {
					return yamlFail(r, "a rule must be a mapping")
				}
				w.rules = append(w.rules, textPos{r.Line, r.Column})
				if w.visit(r, f.kind) {
					continue
				}
				if err := w.pairs(r, func(k, v *yaml.Node) error {
					f, ok := yamlField(k.Value, ruleFields)
					if !ok {
						return yamlFail(k, "%s", unknownField(k.Value, "in a rule", ruleFields))
					}
					return w.value(f, v)
				}); err != nil {
					return err
				}
			}
			return nil
		}
	}
	return yamlFail(v, "%s", f.must("mapping"))
}

// visit reports whether n was checked as k already, and marks it.
func (w *yamlPolicy) visit(n *yaml.Node, k fieldKind) bool {
	v := yamlVisit{n, k}
	if w.done[v] {
		return true
	}
	w.done[v] = true
	return false
}

func (w *yamlPolicy) names(v *yaml.Node, must string) error {
	if w.visit(v, fieldNames) {
		return nil
	}
	for _, e := range v.Content {
		if e = yamlResolve(e); e.Kind != yaml.ScalarNode {
			return yamlFail(e, "%s", must)
		}
	}
	return nil
}

// yamlResolve follows aliases to the node they name.
func yamlResolve(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func yamlNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

func yamlFail(n *yaml.Node, format string, args ...any) error {
	return fmt.Errorf("mcpauth: policy line %d, column %d: "+format, append([]any{n.Line, n.Column}, args...)...)
}

// yamlParserProblems are the problems go.yaml.in/yaml/v3's parser (not its
// scanner) reports, with a line counted from 0, or none on the first line.
var yamlParserProblems = []string{
	"did not find expected", "found undefined tag handle", "found duplicate %YAML directive",
	"found incompatible YAML document", "found duplicate %TAG directive",
}

// yamlError turns an error of go.yaml.in/yaml/v3 into the policy's words,
// with the line it names, counted from 1.
func yamlError(data []byte, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		// What the checks let through: the decoder's own words.
		msg := te.Errors[0]
		if rest, ok := strings.CutPrefix(msg, "line "); ok {
			if n, after, ok := strings.Cut(rest, ": "); ok {
				return fmt.Errorf("mcpauth: policy line %s: %s", n, after)
			}
		}
		return fmt.Errorf("mcpauth: policy: %s", msg)
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, after, ok := strings.Cut(rest, ": "); ok {
			if l, err := strconv.Atoi(n); err == nil {
				line, msg = l, after
			}
		}
	}
	if slices.ContainsFunc(yamlParserProblems, func(p string) bool { return strings.HasPrefix(msg, p) }) {
		line++
	}
	if line == 0 {
		return fmt.Errorf("mcpauth: policy: invalid YAML: %s", msg)
	}
	lines := bytes.Split(data, []byte{'\n'})
	if line <= len(lines) && bytes.IndexByte(lines[line-1], '\t') >= 0 {
		msg += " (YAML indents with spaces, not tabs)"
	}
	return fmt.Errorf("mcpauth: policy line %d: invalid YAML: %s", line, msg)
}

// foldKey maps each rune of s to the least rune of its Unicode simple
// folding orbit, so that two strings are equal under strings.EqualFold
// exactly when their foldKeys are equal.
func foldKey(s string) string {
	return strings.Map(func(r rune) rune {
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		return least
	}, s)
}

// LoadPolicy reads a policy file with [ParsePolicy].
func LoadPolicy(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("mcpauth: policy: %w", err)
	}
	p, err := ParsePolicy(data)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return p, nil
}

// The kinds of things a rule covers.
type kind uint8

const (
	kindTool kind = iota
	kindPrompt
	kindResource
	numKinds
)

var kindNames = [numKinds]string{"tool", "prompt", "resource"}

// roleBits is a set of roles, by their index in compiled.roleIndex.
type roleBits []uint64

func (b roleBits) has(i int) bool { return b[i>>6]&(1<<(i&63)) != 0 }
func (b roleBits) set(i int)      { b[i>>6] |= 1 << (i & 63) }

// compiled is a policy in the form the guard decides with: per call, one map
// lookup for the rule, one per role the caller holds, and a bit test.
type compiled struct {
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
		if s == "" || strings.ContainsFunc(s, func(c rune) bool { return c <= ' ' || c > '~' || c == '"' || c == '\\' }) {
			return nil, fmt.Errorf("%s %q: invalid scope %q", kindNames[r.kind], r.pattern, s)
		}
	}
	r.scopes = slices.Clone(pr.Scopes)
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
	r.roleErr = &accessError{class: ErrForbidden, reason: "role", msg: "mcpauth: access denied: " + what + " requires " + roles}
	scopeErr := &ScopeError{Required: r.scopes}
	r.scopeErr = &accessError{class: ErrForbidden, reason: "scope", scope: scopeErr, msg: "mcpauth: access denied: " + what + " requires " + scopes}
	r.bothErr = &accessError{class: ErrForbidden, reason: "role", msg: "mcpauth: access denied: " + what + " requires " + roles + " and " + scopes}
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

// An accessError is a guard's refusal. Its text is what the caller sees: it
// names what the rule requires, never anything about other callers.
type accessError struct {
	class      error
	reason     string // for the audit event
	msg        string
	scope      *ScopeError // for a refusal a scope step-up would fix
	retryAfter time.Duration
}

func (e *accessError) Error() string { return e.msg }

func (e *accessError) Unwrap() []error {
	if e.scope != nil {
		return []error{e.class, e.scope}
	}
	return []error{e.class}
}

// The refusals that do not depend on a rule.
var (
	errUnauthenticated = &accessError{class: ErrNoCredentials, reason: "unauthenticated", msg: "mcpauth: access denied: authentication required"}
	errNoRule          = [numKinds]*accessError{
		{class: ErrForbidden, reason: "no_rule", msg: "mcpauth: access denied: no rule allows this tool"},
		{class: ErrForbidden, reason: "no_rule", msg: "mcpauth: access denied: no rule allows this prompt"},
		{class: ErrForbidden, reason: "no_rule", msg: "mcpauth: access denied: no rule allows this resource"},
	}
)

// errURIForm refuses a resource URI that [abnormalURI] reports.
var errURIForm = &accessError{class: ErrForbidden, reason: "uri_form", msg: "mcpauth: access denied: resource URI not in normal form (write a lower-case scheme and host, no userinfo, no default or empty port, no trailing dot, no dot or empty segments, file:///path for files, and percent-encode only what must be, in upper-case hex)"}

// abnormalURI reports whether uri, up to its query or fragment, is written
// in a form that denotes another URI once parsed and cleaned. Rules match
// URIs as written, but a resource handler that parses its URI (url.Parse,
// then path.Clean or filepath.Join, or an HTTP fetch) reads what it
// denotes: "file:///public/../private/x", "file:///%70rivate/x" or
// "https://INTRANET.example:443/x" would match a rule for file:///public/*
// or a broad one like https://* and read what a rule for
// file:///private/* or https://intranet.example/* denies.
//
// It refuses, rather than normalises, so that the handler gets the URI the
// rule was decided on:
//   - a scheme that is not lower-case RFC 3986 scheme syntax;
//   - in the authority: userinfo, a host with an upper-case letter, a
//     percent-encoding, a byte outside ASCII or one a host cannot hold, an
//     empty label or a trailing dot, an IP literal not in its RFC 5952 text
//     or an IPv4-mapped one, an empty port, a port with a leading zero or
//     the scheme's default port; and for http, https, ws, wss and ftp, a
//     host ending in a number that is not a dotted-decimal IPv4 address
//     (inet_aton and WHATWG URL read 0x7f.1 and 2130706433 as 127.0.0.1),
//     and an empty path ("https://h" is "https://h/");
//   - a file URI not written file:///path (file:/x, file://localhost/x);
//   - anywhere: a backslash, a control character, a dot segment or an empty
//     one ("//" in the path), a percent-encoded unreserved character, slash
//     or backslash, and lower-case hex digits in a percent-encoding.
//
// URIs in normal form, as clients and servers write them, are none of
// these. It does not allocate.
func abnormalURI(uri string) bool {
	// One pass up to the query or fragment: bytes refused anywhere,
	// percent-encodings and dot segments.
	seg, end := 0, len(uri) // where the current segment starts; the cut
scan:
	for i := 0; i < len(uri); i++ {
		c := uri[i]
		if uriPlain[c] {
			continue
		}
		switch c {
		case '?', '#':
			end = i
			break scan
		case '/':
			if s := uri[seg:i]; s == "." || s == ".." {
				return true
			}
			seg = i + 1
		case '%':
			if i+2 >= len(uri) {
				continue
			}
			hi, lo := unhex(uri[i+1]), unhex(uri[i+2])
			if hi < 0 || lo < 0 {
				continue
			}
			if 'a' <= uri[i+1] || 'a' <= uri[i+2] {
				// %2f and %2F are one byte: RFC 3986 §6.2.2.1 writes
				// the upper-case one.
				return true
			}
			switch c := byte(hi<<4 | lo); {
			case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
				c == '-', c == '.', c == '_', c == '~', c == '/', c == '\\':
				return true
			}
		default:
			// A control character or a backslash.
			return true
		}
	}
	if s := uri[seg:end]; s == "." || s == ".." {
		return true
	}
	uri = uri[:end]

	path := uri
	if i := strings.IndexByte(uri, ':'); i > 0 && strings.IndexByte(uri[:i], '/') < 0 {
		scheme := uri[:i]
		for j := 0; j < len(scheme); j++ {
			switch c := scheme[j]; {
			case 'a' <= c && c <= 'z':
			case j > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
			default:
				return true
			}
		}
		path = uri[i+1:]
		if scheme == "file" {
			// file:/x, file://localhost/x and file://host/x name the
			// file that rules write as file:///x (RFC 8089), and
			// handlers mostly ignore the host.
			if !strings.HasPrefix(path, "///") {
				return true
			}
		}
		if rest, ok := strings.CutPrefix(path, "//"); ok {
			authority := rest
			path = ""
			if j := strings.IndexByte(rest, '/'); j >= 0 {
				authority, path = rest[:j], rest[j:]
			}
			if abnormalAuthority(scheme, authority, path) {
				return true
			}
		}
	}
	// An empty segment: path.Clean drops it, and a leading one would be
	// read as an authority.
	return strings.Contains(path, "//")
}

// uriPlain holds the bytes [abnormalURI] need not look at twice: all but
// controls, DEL, '/', '%', '\\', '?' and '#'.
var uriPlain = func() (t [256]bool) {
	for c := ' '; c < 0x100; c++ {
		t[c] = c != 0x7f && !strings.ContainsRune("/%\\?#", c)
	}
	return t
}()

// hostPlain holds the bytes of a registered name in normal form: lower-case
// letters, digits, '-', '.', '_', '~' and RFC 3986 sub-delims.
var hostPlain = func() (t [256]bool) {
	for c := range 256 {
		t[c] = 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || strings.ContainsRune("-._~!$&'()*+,;=", rune(c))
	}
	return t
}()

// abnormalAuthority reports whether the authority of a URI of scheme, with
// path after it, is not in the one form [abnormalURI] accepts. The forms it
// refuses reach the same host as the normal one under RFC 3986 §6.2.2 and
// §6.2.3 normalisation, or through a resolver or an HTTP client (a
// trailing dot, IDNA mapping of non-ASCII and percent-encoded hosts,
// inet_aton's IPv4 forms).
func abnormalAuthority(scheme, authority, path string) bool {
	if strings.IndexByte(authority, '@') >= 0 {
		// Userinfo: https://anyone@h/ is h to an HTTP client.
		return true
	}
	host, port, hasPort := authority, "", false
	if strings.HasPrefix(authority, "[") {
		end := strings.IndexByte(authority, ']')
		if end < 0 || !normalIPv6(authority[1:end]) {
			return true
		}
		host = authority[:end+1]
		if rest := authority[end+1:]; rest != "" {
			if rest[0] != ':' {
				return true
			}
			port, hasPort = rest[1:], true
		}
	} else {
		if j := strings.LastIndexByte(authority, ':'); j >= 0 {
			host, port, hasPort = authority[:j], authority[j+1:], true
		}
		if abnormalRegName(host, specialPort(scheme) != "") {
			return true
		}
	}
	if hasPort {
		if port == "" || port[0] == '0' || port == specialPort(scheme) {
			return true
		}
		for i := 0; i < len(port); i++ {
			if port[i] < '0' || port[i] > '9' {
				return true
			}
		}
	}
	// RFC 3986 §6.2.3: for http and its kin an empty path is "/".
	return path == "" && specialPort(scheme) != ""
}

// specialPort is the default port of the schemes whose hosts WHATWG URL
// parses as network hosts, or "" for any other scheme.
func specialPort(scheme string) string {
	switch scheme {
	case "http", "ws":
		return "80"
	case "https", "wss":
		return "443"
	case "ftp":
		return "21"
	}
	return ""
}

// abnormalRegName reports whether host, a registered name, is not written
// in lower-case ASCII letters, digits, '-', '.', '_', '~' and RFC 3986
// sub-delims, with no empty label or trailing dot. For a network host it
// also reports one that ends in a number (WHATWG URL's test for an IPv4
// address) but is not dotted decimal.
func abnormalRegName(host string, network bool) bool {
	if host == "" {
		return false
	}
	if host[0] == '.' || host[len(host)-1] == '.' || strings.Contains(host, "..") {
		return true
	}
	for i := 0; i < len(host); i++ {
		if !hostPlain[host[i]] {
			return true
		}
	}
	if !network {
		return false
	}
	last := host[strings.LastIndexByte(host, '.')+1:]
	number := strings.HasPrefix(last, "0x")
	if !number {
		number = true
		for i := 0; i < len(last); i++ {
			if last[i] < '0' || last[i] > '9' {
				number = false
				break
			}
		}
	}
	if !number {
		return false
	}
	// netip refuses leading zeros, hex and fewer than four parts.
	a, err := netip.ParseAddr(host)
	return err != nil || !a.Is4()
}

// normalIPv6 reports whether s, the text of an IP literal, is an IPv6
// address written as RFC 5952 writes it (lower case, zeros compressed,
// no zone), and not an IPv4-mapped one, which reaches the IPv4 address.
func normalIPv6(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f', c == ':', c == '.':
		default:
			return false
		}
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is6() || a.Is4In6() {
		return false
	}
	var buf [48]byte
	return string(a.AppendTo(buf[:0])) == s
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
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
	for _, s := range r.scopes {
		if !p.HasScope(s) {
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
	scopeOK := true
	for _, s := range r.scopes {
		if !p.HasScope(s) {
			scopeOK = false
			break
		}
	}
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
