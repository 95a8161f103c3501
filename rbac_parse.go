package mcpauth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/mcpauth/mcpauth/internal/jose"
	"go.yaml.in/yaml/v3"
)

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
	fieldRoles // role (or scope) name -> the roles it inherits (the scopes it implies)
	fieldRules // a list of rules
)

type policyField struct {
	name string
	kind fieldKind
	what string // for fieldNames: what the list holds
}

var (
	topFields  = []policyField{{"roles", fieldRoles, "role"}, {"scopes", fieldRoles, "scope"}, {"rules", fieldRules, ""}}
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
		article := "a"
		if mapping == "object" {
			article = "an"
		}
		if f.what == "scope" {
			return fmt.Sprintf("%q must be %s %s of scopes to the narrower scopes each implies", f.name, article, mapping)
		}
		return fmt.Sprintf("%q must be %s %s of role names to the roles each inherits", f.name, article, mapping)
	case fieldRules:
		return fmt.Sprintf("%q must be a list of rules", f.name)
	}
	return fmt.Sprintf("%q must be a string", f.name)
}

// entryMust says what the value of one entry of a fieldRoles map must be.
func (f policyField) entryMust(key string) string {
	if f.what == "scope" {
		return fmt.Sprintf("scope %q must be a list of the narrower scopes it implies", key)
	}
	return fmt.Sprintf("role %q must be a list of the roles it inherits", key)
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
		if jose.FoldKey(key) == jose.FoldKey(f.name) {
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
		k := jose.FoldKey(key)
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
				must := f.entryMust(role)
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
				must := f.entryMust(k.Value)
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
