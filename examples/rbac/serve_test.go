// This file is the same in every example: it tests serve.go and holds the
// helpers that main_test.go uses.

package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func TestClientURL(t *testing.T) {
	for _, tt := range []struct {
		addr  string
		https bool
		want  string
	}{
		{":8080", false, "http://127.0.0.1:8080/mcp"},
		{"0.0.0.0:8080", false, "http://127.0.0.1:8080/mcp"},
		{"[::]:8080", false, "http://127.0.0.1:8080/mcp"},
		{":8443", true, "https://127.0.0.1:8443/mcp"},
		{"127.0.0.1:8080", false, "http://127.0.0.1:8080/mcp"},
		{"localhost:8080", false, "http://localhost:8080/mcp"},
		{"[::1]:8080", false, "http://[::1]:8080/mcp"},
		{"mcp.example.com:443", true, "https://mcp.example.com:443/mcp"},
		{"192.168.1.20:8080", false, "http://192.168.1.20:8080/mcp"},
	} {
		if got := clientURL(tt.addr, tt.https); got != tt.want {
			t.Errorf("clientURL(%q, %v) = %q, want %q", tt.addr, tt.https, got, tt.want)
		}
	}
}

func TestPlainHTTPWarning(t *testing.T) {
	for _, tt := range []struct {
		addr string
		warn bool
	}{
		{"127.0.0.1:8080", false},
		{"127.0.0.2:8080", false},
		{"[::1]:8080", false},
		{"localhost:8080", false},
		{"LOCALHOST:8080", false},
		{":8080", true}, // every interface
		{"0.0.0.0:8080", true},
		{"[::]:8080", true},
		{"192.168.1.20:8080", true},
		{"mcp.example.com:8080", true},
		{"localhost.example.com:8080", true},
	} {
		w := plainHTTPWarning(tt.addr)
		if (w != "") != tt.warn {
			t.Errorf("plainHTTPWarning(%q) = %q, want a warning: %v", tt.addr, w, tt.warn)
		}
		if w != "" && (!strings.Contains(w, tt.addr) || !strings.Contains(w, "-tls-cert")) {
			t.Errorf("plainHTTPWarning(%q) = %q: want the address and the fix", tt.addr, w)
		}
	}
}

// TestListenWarns: listen logs the warning for plain HTTP beyond loopback,
// and only then. (The port name does not resolve, so nothing is bound to a
// non-loopback address.)
func TestListenWarns(t *testing.T) {
	for _, tt := range []struct {
		addr string
		warn bool
	}{
		{"0.0.0.0:no-such-port", true},
		{":no-such-port", true},
		{"127.0.0.1:0", false},
	} {
		var logs bytes.Buffer
		sf := serverFlags{addr: tt.addr}
		if l, err := sf.listen(log.New(&logs, "", 0)); err == nil {
			l.Close()
		}
		if got := strings.Contains(logs.String(), "WARNING: serving plain HTTP"); got != tt.warn {
			t.Errorf("listen(%q) logged %q, want a warning: %v", tt.addr, logs.String(), tt.warn)
		}
	}
}

// TestServerLimits: the timeouts and header limit are set, and no
// WriteTimeout cuts SSE streams.
func TestServerLimits(t *testing.T) {
	srv := newHTTPServer(http.NotFoundHandler(), nil, nil)
	if srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.IdleTimeout <= 0 || srv.MaxHeaderBytes <= 0 || srv.MaxHeaderBytes > 1<<20 {
		t.Errorf("limits: ReadHeaderTimeout %v, ReadTimeout %v, IdleTimeout %v, MaxHeaderBytes %d",
			srv.ReadHeaderTimeout, srv.ReadTimeout, srv.IdleTimeout, srv.MaxHeaderBytes)
	}
	if srv.WriteTimeout != 0 {
		t.Errorf("WriteTimeout = %v: it would cut SSE streams", srv.WriteTimeout)
	}
}

func TestTLSFlags(t *testing.T) {
	certFile, keyFile, pool := selfSignedCert(t)
	var logs bytes.Buffer
	logger := log.New(&logs, "", 0)
	for _, tt := range []struct {
		name  string
		flags serverFlags
	}{
		{"cert without key", serverFlags{addr: "127.0.0.1:0", tlsCert: certFile}},
		{"key without cert", serverFlags{addr: "127.0.0.1:0", tlsKey: keyFile}},
		{"key for cert", serverFlags{addr: "127.0.0.1:0", tlsCert: keyFile, tlsKey: certFile}},
		{"missing file", serverFlags{addr: "127.0.0.1:0", tlsCert: certFile + ".missing", tlsKey: keyFile}},
	} {
		if l, err := tt.flags.listen(logger); err == nil {
			l.Close()
			t.Errorf("%s: listen accepted it", tt.name)
		}
	}

	sf := serverFlags{addr: "127.0.0.1:0", tlsCert: certFile, tlsKey: keyFile}
	l, err := sf.listen(logger)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(l.url, "https://127.0.0.1:") || strings.HasSuffix(l.url, ":0/mcp") {
		t.Errorf("url = %q, want https and the bound port", l.url)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, r.Proto)
		}), logger)
	}()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	resp, err := client.Get(l.url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "HTTP/2.0" {
		t.Errorf("over HTTPS: %q, want HTTP/2.0", body)
	}
	// Plain HTTP to the HTTPS port gets nothing through.
	if resp, err := http.Get(strings.Replace(l.url, "https:", "http:", 1)); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP was served")
		}
	}
	cancel()
	if err := waitFor(t, done); err != nil {
		t.Errorf("serve: %v", err)
	}
	if logs.Len() > 0 && strings.Contains(logs.String(), "WARNING") {
		t.Errorf("warned when serving HTTPS on loopback: %s", logs.String())
	}
}

// TestGracefulShutdown: a request in flight when the shutdown begins is
// answered, new connections are refused, and serve returns nil.
func TestGracefulShutdown(t *testing.T) {
	sf := serverFlags{addr: "127.0.0.1:0"}
	logger := log.New(io.Discard, "", 0)
	l, err := sf.listen(logger)
	if err != nil {
		t.Fatal(err)
	}
	started, release := make(chan struct{}), make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(started)
			<-release
			io.WriteString(w, "finished")
		}), logger)
	}()
	type result struct {
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := http.Get(l.url)
		if err != nil {
			got <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		got <- result{string(b), err}
	}()
	<-started
	cancel()
	// The shutdown has begun once the listener refuses connections.
	addr := strings.TrimSuffix(strings.TrimPrefix(l.url, "http://"), "/mcp")
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting connections after the shutdown began")
		}
	}
	close(release)
	if r := <-got; r.err != nil || r.body != "finished" {
		t.Errorf("request in flight: %q, %v", r.body, r.err)
	}
	if err := waitFor(t, done); err != nil {
		t.Errorf("serve: %v", err)
	}
}

// waitFor returns what done delivers, failing t if nothing comes within 10 s.
func waitFor(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return")
		return nil
	}
}

// selfSignedCert writes a self-signed certificate for 127.0.0.1 and
// localhost, and its key, to files, and returns them with a pool that trusts
// the certificate.
func selfSignedCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// syncBuffer is a bytes.Buffer that run's goroutine may write while the
// test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// started is an example started by startRun.
type started struct {
	url            string
	stdout, stderr *syncBuffer
}

// startRun runs the example with args and the environment env until the
// test ends, and returns the URL it serves at once it has logged it. At the
// end of the test it stops the example as SIGTERM would and checks that it
// shut down cleanly.
func startRun(t *testing.T, args []string, env map[string]string) *started {
	t.Helper()
	s := &started{stdout: &syncBuffer{}, stderr: &syncBuffer{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, func(k string) string { return env[k] }, s.stdout, s.stderr) }()
	t.Cleanup(func() {
		cancel()
		if err := waitFor(t, done); err != nil {
			t.Errorf("run: %v", err)
		}
	})
	const marker = "MCP server on "
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if out := s.stderr.String(); strings.Contains(out, marker) {
			s.url = strings.Fields(out[strings.Index(out, marker)+len(marker):])[0]
			return s
		}
		select {
		case err := <-done:
			t.Fatalf("run returned before serving: %v\n%s", err, s.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("run did not log its URL:\n%s", s.stderr)
		}
	}
}

// connect connects go-sdk's MCP client to url with the header name: value on
// every request (none if name is ""), trusting pool for HTTPS (the system's
// roots if nil), asking for protocolVersion. The session is closed when the
// test ends.
func connect(t *testing.T, url, protocolVersion, name, value string, pool *x509.CertPool) (*mcp.ClientSession, error) {
	t.Helper()
	base := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	t.Cleanup(base.CloseIdleConnections)
	transport := &mcp.StreamableClientTransport{
		Endpoint:             url,
		HTTPClient:           &http.Client{Transport: withHeader{base, name, value}},
		DisableStandaloneSSE: true,
	}
	c := mcp.NewClient(&mcp.Implementation{Name: "example-test", Version: "1"}, nil)
	cs, err := c.Connect(context.Background(), transport, &mcp.ClientSessionOptions{ProtocolVersion: protocolVersion})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { cs.Close() })
	return cs, nil
}

type withHeader struct {
	base        http.RoundTripper
	name, value string
}

func (h withHeader) RoundTrip(r *http.Request) (*http.Response, error) {
	if h.name != "" {
		r = r.Clone(r.Context())
		r.Header.Set(h.name, h.value)
	}
	return h.base.RoundTrip(r)
}

// TestPrintClients: each client's configuration names the URL and carries
// the credential the way that client reads it.
func TestPrintClients(t *testing.T) {
	const url, cred = "https://127.0.0.1:8443/mcp", "mcpk_test"
	var out bytes.Buffer
	printClients(&out, "demo", url, cred)
	sections := map[string]string{}
	for _, s := range strings.Split(strings.TrimSpace(out.String()), "\n\n") {
		title, body, _ := strings.Cut(s, "\n")
		if i := strings.IndexAny(title, "(:"); i >= 0 {
			title = strings.TrimSpace(title[:i])
		}
		sections[title] = body
	}
	if got, want := strings.TrimSpace(sections["Claude Code"]), `claude mcp add --transport http demo `+url+` --header "Authorization: Bearer `+cred+`"`; got != want {
		t.Errorf("Claude Code: %s\nwant %s", got, want)
	}
	decode := func(section string, v any) {
		t.Helper()
		if err := json.Unmarshal([]byte(sections[section]), v); err != nil {
			t.Errorf("%s: %v\n%s", section, err, out.String())
		}
	}
	// Claude Desktop runs local (stdio) servers only: mcp-remote bridges.
	var desktop struct {
		MCPServers map[string]struct {
			Command string            `json:"command"`
			Args    []string          `json:"args"`
			Env     map[string]string `json:"env"`
			URL     string            `json:"url"`
		} `json:"mcpServers"`
	}
	decode("Claude Desktop", &desktop)
	d := desktop.MCPServers["demo"]
	if d.Command != "npx" || !slices.Equal(d.Args, []string{"-y", "mcp-remote", url, "--header", "Authorization:${AUTH_HEADER}"}) ||
		d.Env["AUTH_HEADER"] != "Bearer "+cred || d.URL != "" {
		t.Errorf("Claude Desktop: %+v", d)
	}
	var vscode struct {
		Inputs []struct {
			Type, ID string
			Password bool
		} `json:"inputs"`
		Servers map[string]struct {
			Type, URL string
			Headers   map[string]string
		} `json:"servers"`
	}
	decode("VS Code", &vscode)
	v := vscode.Servers["demo"]
	if len(vscode.Inputs) != 1 || vscode.Inputs[0].Type != "promptString" || !vscode.Inputs[0].Password ||
		v.Type != "http" || v.URL != url || v.Headers["Authorization"] != "Bearer ${input:"+vscode.Inputs[0].ID+"}" {
		t.Errorf("VS Code: %+v", vscode)
	}
	var cursor struct {
		MCPServers map[string]struct {
			URL     string
			Headers map[string]string
		} `json:"mcpServers"`
	}
	decode("Cursor", &cursor)
	if c := cursor.MCPServers["demo"]; c.URL != url || c.Headers["Authorization"] != "Bearer "+cred {
		t.Errorf("Cursor: %+v", c)
	}
}
