package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// protocolVersions are the versions the tests' client asks for. The
// example serves stateful sessions, so a 2026-07-28 client falls back to
// 2025-11-25 with initialize: both must work.
var protocolVersions = []string{"2025-11-25", "2026-07-28"}

// TestMTLSExample runs the command on an empty folder: it generates the
// certificates, checks itself, prints the curl command, and serves the
// tools to go-sdk's client with the client certificate and to no client
// without one. A second run on the same folder uses the same files.
func TestMTLSExample(t *testing.T) {
	slog.SetDefault(slog.New(slog.DiscardHandler))
	dir := filepath.Join(t.TempDir(), "certs")
	s := startRun(t, []string{"-addr", "127.0.0.1:0", "-certs", dir})
	for _, name := range certFiles {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", name, fi.Mode().Perm())
		}
	}
	out := s.stdout.String()
	if !strings.Contains(out, "curl --cacert "+filepath.Join(dir, fileCA)+" --cert "+filepath.Join(dir, fileClient)) || !strings.Contains(out, s.url) {
		t.Errorf("printed:\n%s", out)
	}
	want := map[string]any{"subject": "demo-client", "method": "mtls", "roles": []any{}, "scopes": []any{}}
	for _, v := range protocolVersions {
		cs, err := connect(t, s.url, v, dir, true)
		if err != nil {
			t.Fatalf("%s: %v", v, err)
		}
		checkTools(t, cs, want)
	}
	if _, err := connect(t, s.url, protocolVersions[0], dir, false); err == nil {
		t.Error("connected without a client certificate")
	}

	ca, _ := os.ReadFile(filepath.Join(dir, fileCA))
	again := startRun(t, []string{"-addr", "127.0.0.1:0", "-certs", dir})
	if strings.Contains(again.stderr.String(), "generated") {
		t.Error("the second run generated new certificates")
	}
	if now, _ := os.ReadFile(filepath.Join(dir, fileCA)); !bytes.Equal(now, ca) {
		t.Error("the second run changed ca.pem")
	}
	cs, err := connect(t, again.url, protocolVersions[0], dir, true)
	if err != nil {
		t.Fatal(err)
	}
	checkTools(t, cs, want)
}

// TestMTLSExampleErrors: a folder with only some of the files, or a bad
// flag, stops it before it serves, printing nothing.
func TestMTLSExampleErrors(t *testing.T) {
	partial := t.TempDir()
	if err := os.WriteFile(filepath.Join(partial, fileCA), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := t.TempDir()
	out, err := generate(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range out {
		if name == fileServerKey {
			b = out[fileClientKey] // a key that is not the server certificate's
		}
		if err := os.WriteFile(filepath.Join(bad, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{
		{"-addr", "127.0.0.1:0", "-certs", partial},
		{"-addr", "127.0.0.1:0", "-certs", bad},
		{"-no-such-flag"},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		var stdout, stderr syncBuffer
		if err := run(ctx, args, &stdout, &stderr); err == nil {
			t.Errorf("run(%q) served", args)
		}
		if stdout.String() != "" {
			t.Errorf("run(%q) printed %q", args, stdout.String())
		}
	}
	if fi, _ := os.Stat(filepath.Join(partial, fileServer)); fi != nil {
		t.Error("files were generated beside a partial set")
	}
}

// connect connects go-sdk's MCP client to url trusting dir's CA, with dir's
// client certificate if withCert.
func connect(t *testing.T, url, protocolVersion, dir string, withCert bool) (*mcp.ClientSession, error) {
	t.Helper()
	caPEM, err := os.ReadFile(filepath.Join(dir, fileCA))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cfg := &tls.Config{RootCAs: pool}
	if withCert {
		cert, err := tls.LoadX509KeyPair(filepath.Join(dir, fileClient), filepath.Join(dir, fileClientKey))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	base := &http.Transport{TLSClientConfig: cfg}
	t.Cleanup(base.CloseIdleConnections)
	transport := &mcp.StreamableClientTransport{Endpoint: url, HTTPClient: &http.Client{Transport: base}, DisableStandaloneSSE: true}
	c := mcp.NewClient(&mcp.Implementation{Name: "example-test", Version: "1"}, nil)
	cs, err := c.Connect(context.Background(), transport, &mcp.ClientSessionOptions{ProtocolVersion: protocolVersion})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { cs.Close() })
	return cs, nil
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
