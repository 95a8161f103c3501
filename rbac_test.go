package mcpauth_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/mcpauth/mcpauth"
	"github.com/mcpauth/mcpauth/internal/mcptest"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// tutorialPolicy is the tutorial's permission table with its hierarchy
// (admin ⊇ editor ⊇ viewer) and rate limits per minute.
func tutorialPolicy() *mcpauth.Policy {
	return &mcpauth.Policy{
		Roles: map[string][]string{"admin": {"editor"}, "editor": {"viewer"}, "viewer": nil},
		Rules: []mcpauth.Rule{
			{Tool: "read-data", Roles: []string{"viewer"}, RateLimit: "100/min"},
			{Tool: "write-data", Roles: []string{"editor"}, RateLimit: "50/min"},
			{Tool: "delete-data", Roles: []string{"admin"}, RateLimit: "10/min"},
			{Tool: "manage-users", Roles: []string{"admin"}, RateLimit: "20/min"},
		},
	}
}

var tutorialTools = []string{"read-data", "write-data", "delete-data", "manage-users"}

// tutorialAllowed is the tutorial's table, written out by hand.
var tutorialAllowed = map[string][]string{
	"viewer": {"read-data"},
	"editor": {"read-data", "write-data"},
	"admin":  {"read-data", "write-data", "delete-data", "manage-users"},
}

func mustGuard(t testing.TB, p *mcpauth.Policy) *mcpauth.Guard {
	t.Helper()
	g, err := mcpauth.NewGuard(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestGuardRoleToolTable(t *testing.T) {
	g := mustGuard(t, tutorialPolicy())
	principals := map[string]*mcpauth.Principal{
		"viewer":       {Subject: "v", Method: mcpauth.MethodAPIKey, Roles: []string{"viewer"}},
		"editor":       {Subject: "e", Method: mcpauth.MethodJWT, Roles: []string{"editor"}},
		"admin":        {Subject: "a", Method: mcpauth.MethodOAuth, Roles: []string{"admin"}},
		"no role":      {Subject: "n", Method: mcpauth.Method("mtls")},
		"unknown role": {Subject: "u", Method: mcpauth.MethodAPIKey, Roles: []string{"superuser"}},
		"two roles":    {Subject: "t", Method: mcpauth.MethodAPIKey, Roles: []string{"superuser", "editor"}},
	}
	want := map[string][]string{
		"viewer":       tutorialAllowed["viewer"],
		"editor":       tutorialAllowed["editor"],
		"admin":        tutorialAllowed["admin"],
		"no role":      nil,
		"unknown role": nil,
		"two roles":    tutorialAllowed["editor"],
	}
	needs := map[string]string{"read-data": "viewer", "write-data": "editor", "delete-data": "admin", "manage-users": "admin"}
	for who, p := range principals {
		for _, tool := range append(tutorialTools, "not-a-tool") {
			err := g.Check(p, tool)
			allowed := false
			for _, a := range want[who] {
				allowed = allowed || a == tool
			}
			if allowed != (err == nil) {
				t.Errorf("%s calling %s: err = %v, want allowed=%v", who, tool, err, allowed)
				continue
			}
			if err == nil {
				continue
			}
			if !errors.Is(err, mcpauth.ErrForbidden) {
				t.Errorf("%s calling %s: %v does not wrap ErrForbidden", who, tool, err)
			}
			if tool == "not-a-tool" {
				if !strings.Contains(err.Error(), "no rule allows this tool") {
					t.Errorf("%s calling %s: %q", who, tool, err)
				}
			} else if want := "requires role " + needs[tool]; !strings.HasSuffix(err.Error(), want) {
				t.Errorf("%s calling %s: %q, want it to end %q", who, tool, err, want)
			}
		}
	}
	if err := g.Check(nil, "read-data"); !errors.Is(err, mcpauth.ErrNoCredentials) {
		t.Errorf("nil principal: %v", err)
	}
}

func TestGuardScopesAndWildcards(t *testing.T) {
	g := mustGuard(t, &mcpauth.Policy{
		Roles: map[string][]string{"admin": {"user"}, "user": nil},
		Rules: []mcpauth.Rule{
			{Tool: "*", Roles: []string{"admin"}},
			{Tool: "db.*", Roles: []string{"user"}},
			{Tool: "db.write.*", Scopes: []string{"tools:write"}},
			{Tool: "db.write.drop", Roles: []string{"admin"}, Scopes: []string{"tools:write", "tools:admin"}},
			{Tool: "public", AnyCaller: true},
		},
	})
	user := &mcpauth.Principal{Subject: "u", Roles: []string{"user"}}
	writer := &mcpauth.Principal{Subject: "w", Scopes: []string{"tools:write"}}
	admin := &mcpauth.Principal{Subject: "a", Roles: []string{"admin"}, Scopes: []string{"tools:write"}}
	root := &mcpauth.Principal{Subject: "r", Roles: []string{"admin"}, Scopes: []string{"tools:admin", "tools:write"}}
	anyone := &mcpauth.Principal{Subject: "x"}
	tests := []struct {
		p       *mcpauth.Principal
		tool    string
		wantErr string // suffix; empty means allowed
		scopes  []string
	}{
		{user, "db.read", "", nil},
		{user, "other", "requires role admin", nil},
		{admin, "other", "", nil},
		{user, "db.write.row", "requires scope tools:write", []string{"tools:write"}},
		{writer, "db.write.row", "", nil},
		{writer, "db.read", "requires role user", nil},
		{admin, "db.write.drop", "requires scopes tools:write and tools:admin", []string{"tools:write", "tools:admin"}},
		{user, "db.write.drop", "requires role admin and scopes tools:write and tools:admin", nil},
		{root, "db.write.drop", "", nil},
		{anyone, "public", "", nil},
		{anyone, "publicity", "requires role admin", nil},
	}
	for _, tt := range tests {
		err := g.Check(tt.p, tt.tool)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("%s calling %s: %v", tt.p.Subject, tt.tool, err)
			}
			continue
		}
		if err == nil || !strings.HasSuffix(err.Error(), tt.wantErr) {
			t.Errorf("%s calling %s: %v, want ...%q", tt.p.Subject, tt.tool, err, tt.wantErr)
			continue
		}
		var se *mcpauth.ScopeError
		if got := errors.As(err, &se); got != (tt.scopes != nil) {
			t.Errorf("%s calling %s: ScopeError = %v, want %v", tt.p.Subject, tt.tool, got, tt.scopes != nil)
		} else if got && !reflect.DeepEqual(se.Required, tt.scopes) {
			t.Errorf("%s calling %s: required scopes %v, want %v", tt.p.Subject, tt.tool, se.Required, tt.scopes)
		}
	}
}

func TestPolicyInheritanceDepth(t *testing.T) {
	// r00 inherits r01, which inherits r02, ... up to r19: a role has every
	// role with a higher number.
	name := func(i int) string { return fmt.Sprintf("r%02d", i) }
	roles := map[string][]string{name(19): nil}
	for i := range 19 {
		roles[name(i)] = []string{name(i + 1)}
	}
	g := mustGuard(t, &mcpauth.Policy{Roles: roles, Rules: []mcpauth.Rule{
		{Tool: "bottom", Roles: []string{name(19)}},
		{Tool: "middle", Roles: []string{name(10)}},
	}})
	for i := range 20 {
		p := &mcpauth.Principal{Roles: []string{name(i)}}
		if err := g.Check(p, "bottom"); err != nil {
			t.Errorf("%s calling bottom: %v", name(i), err)
		}
		if err := g.Check(p, "middle"); (err == nil) != (i <= 10) {
			t.Errorf("%s calling middle: %v", name(i), err)
		}
	}
}

func TestPolicyErrors(t *testing.T) {
	tests := []struct {
		name string
		p    *mcpauth.Policy
		want string
	}{
		{"nil", nil, "nil policy"},
		{"cycle", &mcpauth.Policy{Roles: map[string][]string{"a": {"b"}, "b": {"c"}, "c": {"a"}}}, "cycle: a -> b -> c -> a"},
		{"self cycle", &mcpauth.Policy{Roles: map[string][]string{"a": {"a"}}}, "cycle: a -> a"},
		{"undeclared parent", &mcpauth.Policy{Roles: map[string][]string{"a": {"ghost"}}}, `inherits "ghost", which is not declared`},
		{"unknown role", &mcpauth.Policy{Roles: map[string][]string{"a": nil}, Rules: []mcpauth.Rule{{Tool: "t", Roles: []string{"editor"}}}}, `unknown role "editor"`},
		{"empty rule", &mcpauth.Policy{Rules: []mcpauth.Rule{{Tool: "t"}}}, "set roles, scopes or any_caller"},
		{"no target", &mcpauth.Policy{Rules: []mcpauth.Rule{{AnyCaller: true}}}, "exactly one of tool, prompt and resource"},
		{"two targets", &mcpauth.Policy{Rules: []mcpauth.Rule{{Tool: "t", Prompt: "p", AnyCaller: true}}}, "exactly one of tool, prompt and resource"},
		{"inner star", &mcpauth.Policy{Rules: []mcpauth.Rule{{Tool: "a*b", AnyCaller: true}}}, "may only end a pattern"},
		{"double star", &mcpauth.Policy{Rules: []mcpauth.Rule{{Tool: "a**", AnyCaller: true}}}, "may only end a pattern"},
		{"duplicate", &mcpauth.Policy{Rules: []mcpauth.Rule{{Tool: "t", AnyCaller: true}, {Tool: "t", Scopes: []string{"s"}}}}, `a second rule for tool "t"`},
		{"any and roles", &mcpauth.Policy{Roles: map[string][]string{"a": nil}, Rules: []mcpauth.Rule{{Tool: "t", AnyCaller: true, Roles: []string{"a"}}}}, "any_caller excludes"},
		{"bad scope", &mcpauth.Policy{Rules: []mcpauth.Rule{{Tool: "t", Scopes: []string{"a b"}}}}, "invalid scope"},
		{"bad rate", &mcpauth.Policy{Rules: []mcpauth.Rule{{Tool: "t", AnyCaller: true, RateLimit: "100/fortnight"}}}, "rate_limit"},
		{"zero rate", &mcpauth.Policy{Rules: []mcpauth.Rule{{Tool: "t", AnyCaller: true, RateLimit: "0/min"}}}, "rate_limit"},
		{"bad role name", &mcpauth.Policy{Roles: map[string][]string{"a b": nil}}, "invalid role name"},
	}
	for _, tt := range tests {
		_, err := mcpauth.NewGuard(tt.p, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "mcpauth: ") {
			t.Errorf("%s: err = %v, want it to contain %q", tt.name, err, tt.want)
		}
	}
}

const tutorialJSON = `{
  "roles": {"admin": ["editor"], "editor": ["viewer"], "viewer": []},
  "rules": [
    {"tool": "read-data", "roles": ["viewer"], "rate_limit": "100/min"},
    {"tool": "write-data", "roles": ["editor"], "rate_limit": "50/min"},
    {"tool": "delete-data", "roles": ["admin"], "rate_limit": "10/min"},
    {"tool": "manage-users", "roles": ["admin"], "rate_limit": "20/min"}
  ]
}`

const tutorialYAML = `
roles:
  admin: [editor]   # admin has everything editor has
  editor: [viewer]
  viewer: []
rules:
  - {tool: read-data, roles: [viewer], rate_limit: 100/min}
  - {tool: write-data, roles: [editor], rate_limit: 50/min}
  - tool: delete-data
    roles: [admin]
    rate_limit: 10/min
  - {tool: manage-users, roles: [admin], rate_limit: 20/min}
`

func TestParsePolicy(t *testing.T) {
	want := tutorialPolicy()
	want.Roles["viewer"] = []string{}
	dir := t.TempDir()
	for _, f := range []struct{ name, text string }{{"policy.json", tutorialJSON}, {"policy.yaml", tutorialYAML}} {
		p, err := mcpauth.ParsePolicy([]byte(f.text))
		if err != nil {
			t.Fatalf("%s: %v", f.name, err)
		}
		if !reflect.DeepEqual(p, want) {
			t.Errorf("%s: got %+v, want %+v", f.name, p, want)
		}
		path := filepath.Join(dir, f.name)
		if err := os.WriteFile(path, []byte(f.text), 0o600); err != nil {
			t.Fatal(err)
		}
		p2, err := mcpauth.LoadPolicy(path)
		if err != nil || !reflect.DeepEqual(p2, want) {
			t.Errorf("LoadPolicy(%s) = %+v, %v", f.name, p2, err)
		}
	}

	bad := []struct{ name, text, want string }{
		{"json unknown field", `{"roles": {}, "rules": [{"tool": "t", "role": ["x"]}]}`, `unknown field "role"`},
		{"yaml unknown field", "rules:\n  - tool: t\n    role: [x]\n", `unknown field "role" in a rule`},
		{"json trailing", `{"rules": []} {}`, "data after"},
		{"json invalid rule", `{"rules": [{"tool": "t"}]}`, "set roles, scopes or any_caller"},
		{"yaml cycle", "roles: {a: [b], b: [a]}\n", "cycle"},
		{"yaml syntax", "roles: [\n", "mcpauth: policy"},
	}
	for _, tt := range bad {
		if _, err := mcpauth.ParsePolicy([]byte(tt.text)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want it to contain %q", tt.name, err, tt.want)
		}
	}
	if _, err := mcpauth.LoadPolicy(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("LoadPolicy of a missing file succeeded")
	}
}

func TestGuardCheckRoles(t *testing.T) {
	g := mustGuard(t, tutorialPolicy())
	if err := g.CheckRoles("viewer", "admin", "editor"); err != nil {
		t.Error(err)
	}
	err := g.CheckRoles("viewer", "Admin", "editr", "Admin")
	if err == nil || err.Error() != `mcpauth: the policy does not declare the roles ["Admin" "editr"]` {
		t.Errorf("CheckRoles = %v", err)
	}
}

// TestPolicyErrorMessages: policy files are written by people, so their
// errors say what is wrong in the policy's terms, with the line and column,
// rather than in Go's ("field role not found in type mcpauth.Rule",
// "cannot unmarshal !!seq", "policy: EOF").
func TestPolicyErrorMessages(t *testing.T) {
	for _, tc := range []struct {
		name, text, want string
	}{
		{"empty", "", "mcpauth: policy is empty"},
		{"blank", "  \n\n", "mcpauth: policy is empty"},
		{"only comments", "# roles: {admin: []}\n", "mcpauth: policy is empty"},
		{"yaml null", "~\n", "mcpauth: policy is empty"},

		{"yaml unknown rule field", "roles: {user: []}\nrules:\n  - tool: x\n    role: [user]\n",
			`mcpauth: policy line 4, column 5: unknown field "role" in a rule (did you mean "roles"?)`},
		{"yaml unknown rule field, no near name", "roles: {user: []}\nrules:\n  - {tool: x, colour: red}\n",
			`mcpauth: policy line 3, column 15: unknown field "colour" in a rule (the fields are tool, prompt, resource, roles, scopes, any_caller, rate_limit)`},
		{"yaml unknown top-level field", "rule:\n  - {tool: x, any_caller: true}\n",
			`mcpauth: policy line 1, column 1: unknown field "rule" at the top level (did you mean "rules"?)`},
		{"yaml rate-limit", "rules:\n  - {tool: x, any_caller: true, rate-limit: 5/min}\n",
			`mcpauth: policy line 2, column 33: unknown field "rate-limit" in a rule (did you mean "rate_limit"?)`},
		{"yaml roles not a list", "roles: {user: []}\nrules:\n  - {tool: x, roles: user}\n",
			`mcpauth: policy line 3, column 22: "roles" must be a list of role names`},
		{"yaml roles of lists", "roles: {user: []}\nrules:\n  - {tool: x, roles: [[user]]}\n",
			`mcpauth: policy line 3, column 23: "roles" must be a list of role names`},
		{"yaml scopes not a list", "rules:\n  - tool: x\n    scopes: tools:write\n",
			`mcpauth: policy line 3, column 13: "scopes" must be a list of scope names`},
		{"yaml any_caller not a bool", "rules:\n  - {tool: x, any_caller: yes}\n",
			`mcpauth: policy line 2, column 27: "any_caller" must be true or false`},
		{"yaml tool not a string", "rules:\n  - {tool: [x], any_caller: true}\n",
			`mcpauth: policy line 2, column 12: "tool" must be a string`},
		{"yaml top-level roles a list", "roles: [admin, user]\n",
			`mcpauth: policy line 1, column 8: "roles" must be a mapping of role names to the roles each inherits`},
		{"yaml inherited roles not a list", "roles:\n  admin: user\n  user: []\n",
			`mcpauth: policy line 2, column 10: role "admin" must be a list of the roles it inherits`},
		{"yaml rules a mapping", "rules:\n  tool: x\n",
			`mcpauth: policy line 2, column 3: "rules" must be a list of rules`},
		{"yaml rule a string", "rules:\n  - x\n",
			`mcpauth: policy line 2, column 5: a rule must be a mapping`},
		{"yaml policy a list", "- tool: x\n",
			`mcpauth: policy line 1, column 1: the policy must be a mapping with "roles" and "rules"`},
		{"yaml key twice", "roles: {user: []}\nroles: {admin: []}\n",
			`mcpauth: policy line 2, column 1: "roles" given twice (first at line 1)`},
		{"yaml rule key twice", "rules:\n  - tool: x\n    roles: [a]\n    roles: [b]\n",
			`mcpauth: policy line 4, column 5: "roles" given twice (first at line 3)`},
		{"yaml merge of a string", "rules:\n  - {<<: x, tool: y}\n",
			`mcpauth: policy line 2, column 10: << must merge a mapping or a list of mappings`},
		{"yaml merged unknown field", "base: &b {role: [user]}\n",
			`mcpauth: policy line 1, column 1: unknown field "base" at the top level (the fields are roles, scopes, rules)`},
		{"yaml syntax", "roles: {user: []}\nrules:\n  - {tool: x, roles: [user]\n",
			`mcpauth: policy line 3: invalid YAML: did not find expected ',' or '}'`},
		{"yaml syntax on line 1", "roles: {user: [}\n",
			`mcpauth: policy line 1: invalid YAML: did not find expected node content`},
		{"yaml tab", "rules:\n\t- {tool: x}\n",
			`mcpauth: policy line 2: invalid YAML: found character that cannot start any token (YAML indents with spaces, not tabs)`},
		{"yaml second document", "rules: []\n---\nrules: []\n",
			`mcpauth: policy line 2: a second YAML document (a policy is one document)`},
		{"yaml rule invalid", "roles: {user: []}\nrules:\n  - {tool: x, roles: [user]}\n  - {tool: y, roles: [admin]}\n",
			`mcpauth: policy line 4, column 5: rule 2: tool "y": unknown role "admin" (declare it under roles)`},

		{"json unknown rule field", "{\n  \"roles\": {\"user\": []},\n  \"rules\": [\n    {\"tool\": \"x\", \"role\": [\"user\"]}\n  ]\n}",
			`mcpauth: policy line 4, column 19: unknown field "role" in a rule (did you mean "roles"?)`},
		{"json unknown top-level field", `{"rule": []}`,
			`mcpauth: policy line 1, column 2: unknown field "rule" at the top level (did you mean "rules"?)`},
		{"json roles not a list", "{\"roles\": {\"user\": []},\n \"rules\": [{\"tool\": \"x\", \"roles\": \"user\"}]}",
			`mcpauth: policy line 2, column 35: "roles" must be a list of role names`},
		{"json roles of numbers", `{"rules": [{"tool": "x", "roles": ["a", 5]}]}`,
			`mcpauth: policy line 1, column 41: "roles" must be a list of role names`},
		{"json any_caller a string", `{"rules": [{"tool": "x", "any_caller": "yes"}]}`,
			`mcpauth: policy line 1, column 40: "any_caller" must be true or false`},
		{"json tool a number", `{"rules": [{"tool": 5, "any_caller": true}]}`,
			`mcpauth: policy line 1, column 21: "tool" must be a string`},
		{"json top-level roles a list", `{"roles": ["admin"]}`,
			`mcpauth: policy line 1, column 11: "roles" must be an object of role names to the roles each inherits`},
		{"json inherited roles a string", `{"roles": {"admin": "user"}}`,
			`mcpauth: policy line 1, column 21: role "admin" must be a list of the roles it inherits`},
		{"json rules an object", `{"rules": {}}`,
			`mcpauth: policy line 1, column 11: "rules" must be a list of rules`},
		{"json rule a string", `{"rules": ["x"]}`,
			`mcpauth: policy line 1, column 12: a rule must be an object`},
		{"json key twice", "{\"roles\": {},\n \"ROLES\": {}}",
			`mcpauth: policy line 2, column 2: key "ROLES" given twice in one object (first at line 1, column 2; JSON keys are matched regardless of case)`},
		{"json trailing comma", "{\"rules\": [\n  {\"tool\": \"x\", \"any_caller\": true,}\n]}",
			`mcpauth: policy line 2, column 36: invalid JSON: unexpected '}': expected a key in double quotes (is there a comma before it?)`},
		{"json missing colon", `{"rules" []}`,
			`mcpauth: policy line 1, column 10: invalid JSON: unexpected '[': expected ':' after the key`},
		{"json unclosed", "{\"rules\": [\n",
			`mcpauth: policy line 2, column 1: invalid JSON: the text ends before every object and list is closed`},
		{"json data after", `{"rules": []} {}`,
			`mcpauth: policy line 1, column 15: data after the JSON object`},
		{"json multibyte column", `{"roles": {"é": 5}}`,
			`mcpauth: policy line 1, column 17: role "é" must be a list of the roles it inherits`},
		{"json rule invalid", "{\"rules\": [\n  {\"tool\": \"x\"}\n]}",
			`mcpauth: policy line 2, column 3: rule 1: tool "x": set roles, scopes or any_caller`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := mcpauth.ParsePolicy([]byte(tc.text))
			if err == nil || err.Error() != tc.want {
				t.Errorf("ParsePolicy(%q):\n got %v\nwant %s", tc.text, err, tc.want)
			}
		})
	}
	// LoadPolicy adds the file's name.
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := mcpauth.LoadPolicy(path); err == nil || err.Error() != "mcpauth: policy is empty (in "+path+")" {
		t.Errorf("LoadPolicy of an empty file: %v", err)
	}
}

// TestPolicyYAMLAliasesAndMerges: anchors, aliases and merge keys are read
// as the decoder reads them, and checked.
func TestPolicyYAMLAliasesAndMerges(t *testing.T) {
	text := `roles: {admin: [], user: []}
rules:
  - &base {tool: a, roles: [user], rate_limit: 5/min}
  - {<<: *base, tool: b}
  - {tool: c, roles: &admins [admin]}
  - {tool: d, roles: *admins}
`
	p, err := mcpauth.ParsePolicy([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	want := []mcpauth.Rule{
		{Tool: "a", Roles: []string{"user"}, RateLimit: "5/min"},
		{Tool: "b", Roles: []string{"user"}, RateLimit: "5/min"},
		{Tool: "c", Roles: []string{"admin"}},
		{Tool: "d", Roles: []string{"admin"}},
	}
	if !reflect.DeepEqual(p.Rules, want) {
		t.Errorf("rules = %+v, want %+v", p.Rules, want)
	}
	bad := "roles: {user: []}\nrules:\n  - &r {tool: a, role: [user]}\n  - {<<: *r, tool: b}\n"
	if _, err := mcpauth.ParsePolicy([]byte(bad)); err == nil || !strings.Contains(err.Error(), `line 3, column 18: unknown field "role" in a rule`) {
		t.Errorf("merged unknown field: %v", err)
	}
}

// TestPolicyScopeHierarchy: a broader scope implies the narrower ones the
// policy says it does, to any depth, in every decision (calls, lists, the
// step-up layer); nothing else is implied.
func TestPolicyScopeHierarchy(t *testing.T) {
	policy := &mcpauth.Policy{
		Scopes: map[string][]string{
			"admin":       {"files"},
			"files":       {"files:read", "files:write"},
			"files:write": {"files:read"},
		},
		Rules: []mcpauth.Rule{
			{Tool: "read", Scopes: []string{"files:read"}},
			{Tool: "write", Scopes: []string{"files:write"}},
			{Tool: "both", Scopes: []string{"files:read", "files:write"}},
			{Tool: "all", Scopes: []string{"files"}},
		},
	}
	g := mustGuard(t, policy)
	tests := []struct {
		scopes  []string
		allowed []string
	}{
		{nil, nil},
		{[]string{"files:read"}, []string{"read"}},
		{[]string{"files:write"}, []string{"read", "write", "both"}},
		{[]string{"files"}, []string{"read", "write", "both", "all"}},
		{[]string{"admin"}, []string{"read", "write", "both", "all"}},
		{[]string{"files:read", "files:write"}, []string{"read", "write", "both"}},
		{[]string{"file"}, nil},    // no prefix matching
		{[]string{"FILES"}, nil},   // scopes are case-sensitive (RFC 6749 §3.3)
		{[]string{"files:*"}, nil}, // no wildcard
		{[]string{"other"}, nil},
	}
	for _, tt := range tests {
		p := &mcpauth.Principal{Subject: "s", Method: mcpauth.MethodJWT, Scopes: tt.scopes}
		var got []string
		for _, tool := range []string{"read", "write", "both", "all"} {
			if err := g.Check(p, tool); err == nil {
				got = append(got, tool)
			} else if !errors.Is(err, mcpauth.ErrForbidden) {
				t.Errorf("%v %s: %v", tt.scopes, tool, err)
			}
		}
		if !slices.Equal(got, tt.allowed) {
			t.Errorf("scopes %v may call %v, want %v", tt.scopes, got, tt.allowed)
		}
	}

	// tools/list and the 403 step-up agree with Check.
	s := mcp.NewServer(&mcp.Implementation{Name: "scopes", Version: "1"}, nil)
	for _, tool := range []string{"read", "write", "both", "all"} {
		mcp.AddTool(s, &mcp.Tool{Name: tool}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, struct{}, error) {
			return &mcp.CallToolResult{}, struct{}{}, nil
		})
	}
	g.Install(s)
	auth := mcpauth.AuthenticatorFunc(func(r *http.Request) (*mcpauth.Principal, error) {
		return &mcpauth.Principal{Subject: "s", Method: mcpauth.MethodJWT, Scopes: strings.Fields(r.Header.Get("X-Test-Scopes"))}, nil
	})
	mode := mcptest.Modes[0]
	h := mcpauth.Require(&mcpauth.RequireOptions{Logger: slog.New(slog.DiscardHandler)}, auth)(g.RequireScopes(nil)(mode.Handler(s)))
	srv := mcptest.Serve(t, h)
	cs, err := mcptest.Connect(t, mode, srv.URL, mcptest.NewHeaders("X-Test-Scopes", "files:write"))
	if err != nil {
		t.Fatal(err)
	}
	if names, _ := mcptest.ToolNames(t, cs); !slices.Equal(names, []string{"both", "read", "write"}) {
		t.Errorf("files:write lists %v", names)
	}
	if res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "read"}); err != nil || res.IsError {
		t.Errorf("files:write calling read: %v %v", res, err)
	}
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"all","arguments":{}}}`
	for _, tc := range []struct {
		scopes string
		code   int
	}{{"admin", http.StatusOK}, {"files:write", http.StatusForbidden}} {
		r := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(body))
		r.Header.Set("X-Test-Scopes", tc.scopes)
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		g.RequireScopes(nil)(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })).ServeHTTP(w, withPrincipal(t, auth, r))
		if w.Code != tc.code {
			t.Errorf("step-up for %q: %d, want %d", tc.scopes, w.Code, tc.code)
		}
		if tc.code == http.StatusForbidden && !strings.Contains(w.Header().Get("WWW-Authenticate"), `scope="files"`) {
			t.Errorf("challenge %q does not name files", w.Header().Get("WWW-Authenticate"))
		}
	}
}

// withPrincipal runs r through Require with a, and returns the request as
// the next handler saw it.
func withPrincipal(t *testing.T, a mcpauth.Authenticator, r *http.Request) *http.Request {
	t.Helper()
	var seen *http.Request
	mcpauth.Require(&mcpauth.RequireOptions{Logger: slog.New(slog.DiscardHandler)}, a)(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { seen = r })).ServeHTTP(httptest.NewRecorder(), r)
	if seen == nil {
		t.Fatal("Require refused the request")
	}
	return seen
}

// TestPolicyScopeHierarchyErrors: a cycle or a malformed scope is refused
// when the policy is compiled, and a file says what is wrong in its words.
func TestPolicyScopeHierarchyErrors(t *testing.T) {
	for _, tc := range []struct {
		scopes map[string][]string
		want   string
	}{
		{map[string][]string{"a": {"b"}, "b": {"a"}}, "cycle"},
		{map[string][]string{"a": {"b"}, "b": {"c"}, "c": {"b"}}, "cycle"},
		{map[string][]string{"a": {"a"}}, "cycle"},
		{map[string][]string{"a b": {"c"}}, `invalid scope "a b"`},
		{map[string][]string{"a": {`c"`}}, `invalid scope "c\""`},
	} {
		_, err := mcpauth.NewGuard(&mcpauth.Policy{Scopes: tc.scopes, Rules: []mcpauth.Rule{{Tool: "t", Scopes: []string{"a"}}}}, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.scopes, err, tc.want)
		}
	}
	for _, tc := range []struct{ text, want string }{
		{`{"scopes": ["a"], "rules": []}`, `"scopes" must be an object of scopes to the narrower scopes each implies`},
		{`{"scopes": {"a": "b"}, "rules": []}`, `scope "a" must be a list of the narrower scopes it implies`},
		{"scopes:\n  a: b\nrules: []\n", `scope "a" must be a list of the narrower scopes it implies`},
	} {
		_, err := mcpauth.ParsePolicy([]byte(tc.text))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.text, err, tc.want)
		}
	}
	p, err := mcpauth.ParsePolicy([]byte("scopes:\n  files: [files:read]\nrules:\n  - tool: t\n    scopes: [files:read]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if g := mustGuard(t, p); g.Check(&mcpauth.Principal{Subject: "s", Scopes: []string{"files"}}, "t") != nil {
		t.Error("a YAML scope hierarchy is not applied")
	}
}
