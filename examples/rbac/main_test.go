package main

import (
	"context"
	"crypto/x509"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/mcpauth/mcpauth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// wantTools are the tools each role sees.
var wantTools = map[string][]string{
	"viewer": {"read-data"},
	"editor": {"read-data", "write-data"},
	"admin":  {"delete-data", "manage-users", "read-data", "write-data"},
}

// keysFor returns one new key per role, and the MCP_API_KEYS value for them.
func keysFor(t *testing.T, roles ...string) (map[string]string, string) {
	t.Helper()
	keys := map[string]string{}
	var env []string
	for _, role := range roles {
		k, err := mcpauth.GenerateAPIKey()
		if err != nil {
			t.Fatal(err)
		}
		keys[role] = k
		env = append(env, k+":"+role+"-user:"+role)
	}
	return keys, strings.Join(env, ",")
}

func TestExampleRoles(t *testing.T) {
	slog.SetDefault(slog.New(slog.DiscardHandler))
	keys, env := keysFor(t, "viewer", "editor", "admin")
	for _, args := range [][]string{
		{"-addr", "127.0.0.1:0"},
		{"-addr", "127.0.0.1:0", "-policy", "policy.yaml"},
	} {
		s := startRun(t, args, map[string]string{mcpauth.EnvAPIKeys: env})
		if out := s.stdout.String(); out != "" {
			t.Errorf("printed with keys configured:\n%s", out)
		}
		for role := range wantTools {
			checkRole(t, s.url, role, keys[role], nil)
		}
	}
}

// TestExampleGeneratesKeys: with no MCP_API_KEYS it prints one key per
// role, each of which works, and client configurations for the viewer's.
func TestExampleGeneratesKeys(t *testing.T) {
	slog.SetDefault(slog.New(slog.DiscardHandler))
	s := startRun(t, []string{"-addr", "127.0.0.1:0"}, nil)
	out := s.stdout.String()
	keys := printedKeys(t, out)
	if len(keys) != 3 {
		t.Fatalf("printed keys for %v:\n%s", keys, out)
	}
	for role, key := range keys {
		checkRole(t, s.url, role, key, nil)
	}
	if !strings.Contains(out, "claude mcp add --transport http rbac "+s.url+` --header "Authorization: Bearer `+keys["viewer"]+`"`) {
		t.Errorf("no client configuration for the viewer key:\n%s", out)
	}
}

// TestExampleRefusesUnknownRole: one start-up check names every role that
// the policy does not declare, and never a key.
func TestExampleRefusesUnknownRole(t *testing.T) {
	keys, env := keysFor(t, "viewer", "administrator", "veiwer")
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // a run that wrongly serves returns at once
	var stdout, stderr syncBuffer
	err := run(ctx, []string{"-addr", "127.0.0.1:0"}, func(k string) string {
		return map[string]string{mcpauth.EnvAPIKeys: env}[k]
	}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), `"administrator"`) || !strings.Contains(err.Error(), `"veiwer"`) ||
		strings.Contains(err.Error(), `"viewer"`) {
		t.Errorf("err = %v, want one naming administrator and veiwer", err)
	}
	for _, k := range keys {
		if strings.Contains(err.Error(), k) || strings.Contains(stderr.String(), k) {
			t.Errorf("the error shows a key: %v", err)
		}
	}
	if stdout.String() != "" || strings.Contains(stderr.String(), "MCP server on") {
		t.Errorf("served anyway: %s%s", stdout.String(), stderr.String())
	}
}

// TestExampleTLS: with -tls-cert and -tls-key it serves HTTPS, and prints
// https URLs.
func TestExampleTLS(t *testing.T) {
	slog.SetDefault(slog.New(slog.DiscardHandler))
	certFile, keyFile, pool := selfSignedCert(t)
	s := startRun(t, []string{"-addr", "127.0.0.1:0", "-tls-cert", certFile, "-tls-key", keyFile}, nil)
	if !strings.HasPrefix(s.url, "https://127.0.0.1:") {
		t.Fatalf("serves at %s, want https", s.url)
	}
	out := s.stdout.String()
	if strings.Contains(out, "http://") || !strings.Contains(out, s.url) {
		t.Errorf("printed URLs are not %s:\n%s", s.url, out)
	}
	keys := printedKeys(t, out)
	checkRole(t, s.url, "editor", keys["editor"], pool)
	if _, err := connect(t, s.url, "2025-11-25", "X-API-Key", keys["admin"], x509.NewCertPool()); err == nil {
		t.Error("connected without trusting the certificate")
	}
}

// TestExamplePolicyFile: the shipped policy file is the policy built in Go.
func TestExamplePolicyFile(t *testing.T) {
	p, err := mcpauth.LoadPolicy("policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := tutorialPolicy()
	want.Roles["viewer"] = []string{}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("policy.yaml = %+v\nwant %+v", p, want)
	}
}

// checkRole connects with key and checks that it sees the tools of role,
// may read, and may manage users only as admin.
func checkRole(t *testing.T, url, role, key string, pool *x509.CertPool) {
	t.Helper()
	ctx := context.Background()
	// The example serves stateful sessions.
	cs, err := connect(t, url, "2025-11-25", "X-API-Key", key, pool)
	if err != nil {
		t.Fatalf("%s: %v", role, err)
	}
	res, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatalf("%s: tools/list: %v", role, err)
	}
	var names []string
	for _, tool := range res.Tools {
		names = append(names, tool.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, wantTools[role]) {
		t.Errorf("%s lists %v, want %v", role, names, wantTools[role])
	}
	r, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "read-data", Arguments: map[string]any{"key": "greeting"}})
	if err != nil || r.IsError {
		t.Errorf("%s read-data: %v %v", role, r, err)
	}
	r, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "manage-users", Arguments: map[string]any{"user": "bob", "role": "viewer"}})
	if err != nil || r.IsError != (role != "admin") {
		t.Errorf("%s manage-users: %v %v", role, r, err)
	}
}

// printedKeys returns the keys by role from the table the example printed.
func printedKeys(t *testing.T, out string) map[string]string {
	t.Helper()
	keys := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 2 && wantTools[f[0]] != nil && strings.HasPrefix(f[1], mcpauth.APIKeyPrefix) {
			keys[f[0]] = f[1]
		}
	}
	return keys
}
