package main

import (
	"context"
	"crypto/x509"
	"log/slog"
	"reflect"
	"strings"
	"testing"

	"github.com/mcpauth/mcpauth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// protocolVersions are the versions the tests' client asks for. The
// quickstart serves stateful sessions, so a 2026-07-28 client falls back to
// 2025-11-25 with initialize: both must work.
var protocolVersions = []string{"2025-11-25", "2026-07-28"}

// TestQuickstart runs the command, with configured and with generated keys,
// and calls both tools through go-sdk's client.
func TestQuickstart(t *testing.T) {
	slog.SetDefault(slog.New(slog.DiscardHandler))
	key, err := mcpauth.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	configured := startRun(t, []string{"-addr", "127.0.0.1:0"}, map[string]string{mcpauth.EnvAPIKeys: " " + key + ":alice:admin|viewer\n"})
	if out := configured.stdout.String(); out != "" {
		t.Errorf("printed with keys configured:\n%s", out)
	}
	fresh := startRun(t, []string{"-addr", "127.0.0.1:0"}, nil)
	generated := generatedKey(t, fresh.stdout.String())

	tests := []struct {
		name          string
		url           string
		header, value string
		want          map[string]any
	}{
		{"configured key", configured.url, "X-API-Key", key,
			map[string]any{"subject": "alice", "method": "apikey", "roles": []any{"admin", "viewer"}, "scopes": []any{}}},
		{"generated key", fresh.url, "Authorization", "Bearer " + generated,
			map[string]any{"subject": "quickstart", "method": "apikey", "roles": []any{}, "scopes": []any{}}},
	}
	for _, tt := range tests {
		for _, v := range protocolVersions {
			t.Run(tt.name+"/"+v, func(t *testing.T) {
				cs, err := connect(t, tt.url, v, tt.header, tt.value, nil)
				if err != nil {
					t.Fatal(err)
				}
				checkTools(t, cs, tt.want)
			})
		}
		if _, err := connect(t, tt.url, protocolVersions[0], "", "", nil); err == nil {
			t.Errorf("%s: connected without a key", tt.name)
		}
	}
}

// TestQuickstartTLS: with -tls-cert and -tls-key it serves HTTPS, and prints
// https URLs.
func TestQuickstartTLS(t *testing.T) {
	slog.SetDefault(slog.New(slog.DiscardHandler))
	certFile, keyFile, pool := selfSignedCert(t)
	s := startRun(t, []string{"-addr", "127.0.0.1:0", "-tls-cert", certFile, "-tls-key", keyFile}, nil)
	if !strings.HasPrefix(s.url, "https://127.0.0.1:") {
		t.Fatalf("serves at %s, want https", s.url)
	}
	out := s.stdout.String()
	key := generatedKey(t, out)
	if !strings.Contains(out, "claude mcp add --transport http quickstart "+s.url) || strings.Contains(out, "http://") {
		t.Errorf("printed URLs are not %s:\n%s", s.url, out)
	}
	if strings.Contains(s.stderr.String(), "WARNING") {
		t.Errorf("warned about plain HTTP:\n%s", s.stderr)
	}
	cs, err := connect(t, s.url, protocolVersions[0], "Authorization", "Bearer "+key, pool)
	if err != nil {
		t.Fatal(err)
	}
	checkTools(t, cs, map[string]any{"subject": "quickstart", "method": "apikey", "roles": []any{}, "scopes": []any{}})
	// A client that does not trust the certificate is refused.
	if _, err := connect(t, s.url, protocolVersions[0], "Authorization", "Bearer "+key, x509.NewCertPool()); err == nil {
		t.Error("connected without trusting the certificate")
	}
}

// TestQuickstartConfigErrors: bad flags and keys stop it before it serves,
// and an error never shows a key.
func TestQuickstartConfigErrors(t *testing.T) {
	certFile, keyFile, _ := selfSignedCert(t)
	key, _ := mcpauth.GenerateAPIKey()
	for _, tt := range []struct {
		args []string
		keys string
	}{
		{[]string{"-addr", "127.0.0.1:0", "-tls-cert", certFile}, ""},
		{[]string{"-addr", "127.0.0.1:0", "-tls-key", keyFile}, ""},
		{[]string{"-addr", "127.0.0.1:0"}, "short"},
		{[]string{"-addr", "127.0.0.1:0"}, key + ":alice:admin," + key + ":bob:viewer"}, // the same key twice
		{[]string{"-addr", "127.0.0.1:0"}, key + ";" + key[:len(key)-1] + "x"},          // ';' is no separator
		{[]string{"-no-such-flag"}, ""},
	} {
		// Cancelled: a run that wrongly got as far as serving returns at
		// once, with nil, instead of serving until the test times out.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		var stdout, stderr syncBuffer
		err := run(ctx, tt.args, func(k string) string { return map[string]string{mcpauth.EnvAPIKeys: tt.keys}[k] }, &stdout, &stderr)
		if err == nil {
			t.Errorf("run(%q, %q) served", tt.args, tt.keys)
		} else if strings.Contains(err.Error(), key) || strings.Contains(stderr.String(), key) {
			t.Errorf("run(%q): the error shows the key: %v", tt.args, err)
		}
		if stdout.String() != "" {
			t.Errorf("run(%q) printed %q", tt.args, stdout.String())
		}
	}
}

// generatedKey returns the key that the quickstart printed in out.
func generatedKey(t *testing.T, out string) string {
	t.Helper()
	for _, f := range strings.Fields(out) {
		if strings.HasPrefix(f, mcpauth.APIKeyPrefix) {
			return f
		}
	}
	t.Fatalf("no key printed:\n%s", out)
	return ""
}

// checkTools calls hello and whoami, and compares whoami's structured
// content with want.
func checkTools(t *testing.T, cs *mcp.ClientSession, want map[string]any) {
	t.Helper()
	ctx := context.Background()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "hello", Arguments: map[string]any{"name": "Ada"}})
	if err != nil || res.IsError || res.Content[0].(*mcp.TextContent).Text != "Hello, Ada!" {
		t.Fatalf("hello: %+v, %v", res, err)
	}
	res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "whoami"})
	if err != nil || res.IsError {
		t.Fatalf("whoami: %+v, %v", res, err)
	}
	if got := res.StructuredContent.(map[string]any); !reflect.DeepEqual(got, want) {
		t.Errorf("whoami = %v, want %v", got, want)
	}
}
