package main

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

const secret = "a test secret that is at least 32 bytes long"

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// mintToken runs the command with -mint and args, and returns the token it
// printed on stdout and what it printed on stderr.
func mintToken(t *testing.T, args ...string) (token, stderr string) {
	t.Helper()
	var out, errOut syncBuffer
	if err := run(context.Background(), append([]string{"-mint"}, args...), env(map[string]string{"JWT_SECRET": secret}), &out, &errOut); err != nil {
		t.Fatal(err)
	}
	token = strings.TrimSpace(out.String())
	if strings.ContainsAny(token, " \n") {
		t.Fatalf("-mint printed more than a token on stdout: %q", out.String())
	}
	return token, errOut.String()
}

// TestMintAndServe is the tutorial's round trip: -mint prints a token, the
// server accepts it and the tools see its subject and roles.
func TestMintAndServe(t *testing.T) {
	slog.SetDefault(slog.New(slog.DiscardHandler))
	const aud = "http://mcp.example.com/mcp"
	token, printed := mintToken(t, "-sub", "alice", "-roles", "admin,viewer", "-scopes", "tools:call", "-audience", aud)
	if !strings.Contains(printed, `--header "Authorization: Bearer `+token+`"`) || !strings.Contains(printed, "mcp-remote") {
		t.Errorf("-mint did not print the client configurations for its token:\n%s", printed)
	}

	s := startRun(t, []string{"-addr", "127.0.0.1:0", "-audience", aud}, map[string]string{"JWT_SECRET": secret})
	for _, v := range []string{"2025-11-25", "2026-07-28"} {
		t.Run(v, func(t *testing.T) {
			cs, err := connect(t, s.url, v, "Authorization", "Bearer "+token, nil)
			if err != nil {
				t.Fatal(err)
			}
			checkTools(t, cs, map[string]any{"subject": "alice", "method": "jwt", "roles": []any{"admin", "viewer"}, "scopes": []any{"tools:call"}})
		})
	}
	// Without a token, 401 with a Bearer challenge.
	resp, err := http.Post(s.url, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("no token: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	// A token for another audience is refused.
	other, _ := mintToken(t, "-audience", "http://other.example.com/mcp")
	if _, err := connect(t, s.url, "2025-11-25", "Authorization", "Bearer "+other, nil); err == nil {
		t.Error("accepted a token for another audience")
	}
}

// TestJWTTLS: with -tls-cert and -tls-key it serves HTTPS, and a token
// minted with the same flags names the https URL as its audience.
func TestJWTTLS(t *testing.T) {
	slog.SetDefault(slog.New(slog.DiscardHandler))
	certFile, keyFile, pool := selfSignedCert(t)
	s := startRun(t, []string{"-addr", "127.0.0.1:0", "-tls-cert", certFile, "-tls-key", keyFile}, map[string]string{"JWT_SECRET": secret})
	if !strings.HasPrefix(s.url, "https://127.0.0.1:") {
		t.Fatalf("serves at %s, want https", s.url)
	}
	token, printed := mintToken(t, "-sub", "bob", "-addr", "127.0.0.1:0", "-tls-cert", certFile, "-tls-key", keyFile)
	if got := audience(t, token); !reflect.DeepEqual(got, []any{"https://127.0.0.1:0/mcp"}) {
		t.Errorf("aud = %v", got)
	}
	if !strings.Contains(printed, "https://127.0.0.1:0/mcp") || strings.Contains(printed, "http://") {
		t.Errorf("printed URLs are not https:\n%s", printed)
	}
	cs, err := connect(t, s.url, "2025-11-25", "Authorization", "Bearer "+token, pool)
	if err != nil {
		t.Fatal(err)
	}
	checkTools(t, cs, map[string]any{"subject": "bob", "method": "jwt", "roles": []any{}, "scopes": []any{}})
	if _, err := connect(t, s.url, "2025-11-25", "Authorization", "Bearer "+token, x509.NewCertPool()); err == nil {
		t.Error("connected without trusting the certificate")
	}
}

// TestDefaultAudience: the default aud is the URL clients use, which names
// the loopback address for a wildcard -addr.
func TestDefaultAudience(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{nil, "http://127.0.0.1:8080/mcp"},
		{[]string{"-addr", ":8080"}, "http://127.0.0.1:8080/mcp"},
		{[]string{"-addr", "0.0.0.0:9000"}, "http://127.0.0.1:9000/mcp"},
		{[]string{"-addr", "[::]:8080"}, "http://127.0.0.1:8080/mcp"},
		{[]string{"-addr", "localhost:8080"}, "http://localhost:8080/mcp"},
		{[]string{"-addr", ":8443", "-tls-cert", "c.pem", "-tls-key", "k.pem"}, "https://127.0.0.1:8443/mcp"},
		{[]string{"-addr", ":8080", "-audience", "https://mcp.example.com/mcp"}, "https://mcp.example.com/mcp"},
	} {
		c, err := parse(tt.args, env(map[string]string{"JWT_SECRET": secret}), &syncBuffer{})
		if err != nil {
			t.Fatal(err)
		}
		if c.audience != tt.want {
			t.Errorf("parse(%q): audience %q, want %q", tt.args, c.audience, tt.want)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
	}{
		{nil, nil},
		{[]string{"-jwks-url", "https://idp.example.com/jwks"}, map[string]string{"JWT_SECRET": secret}},
		{[]string{"-mint", "-jwks-url", "https://idp.example.com/jwks"}, nil},
		{[]string{"-tls-cert", "c.pem"}, map[string]string{"JWT_SECRET": secret}},
		{[]string{"-mint", "-tls-key", "k.pem"}, map[string]string{"JWT_SECRET": secret}},
	} {
		if _, err := parse(tc.args, env(tc.env), &syncBuffer{}); err == nil {
			t.Errorf("parse(%q, %v) accepted it", tc.args, tc.env)
		}
	}
	// A short secret stops the server before it listens, and the error
	// does not show it.
	const short = "sekrit-9f3a"
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // a run that wrongly serves returns at once
	err := run(ctx, []string{"-addr", "127.0.0.1:0"}, env(map[string]string{"JWT_SECRET": short}), &syncBuffer{}, &syncBuffer{})
	if err == nil || strings.Contains(err.Error(), short) {
		t.Errorf("a short JWT_SECRET: %v", err)
	}
}

// audience returns the aud claim of token, unverified.
func audience(t *testing.T, token string) any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", token)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Aud any `json:"aud"`
	}
	if err := json.Unmarshal(b, &claims); err != nil {
		t.Fatal(err)
	}
	if s, ok := claims.Aud.(string); ok {
		return []any{s}
	}
	return claims.Aud
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
