// This file is the same as in the other examples but for what serve.go
// changes (TLS always on, the configuration printed): it tests serve.go and
// holds the helpers that main_test.go uses.

package main

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestClientURL(t *testing.T) {
	for _, tt := range []struct{ addr, want string }{
		{":8443", "https://127.0.0.1:8443/mcp"},
		{"0.0.0.0:8443", "https://127.0.0.1:8443/mcp"},
		{"[::]:8443", "https://127.0.0.1:8443/mcp"},
		{"127.0.0.1:8443", "https://127.0.0.1:8443/mcp"},
		{"localhost:8443", "https://localhost:8443/mcp"},
		{"[::1]:8443", "https://[::1]:8443/mcp"},
	} {
		if got := clientURL(tt.addr); got != tt.want {
			t.Errorf("clientURL(%q) = %q, want %q", tt.addr, got, tt.want)
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
	if _, err := (&serverFlags{addr: "127.0.0.1:0"}).listen(nil); err == nil {
		t.Error("listen without a TLS configuration succeeded")
	}
}

// TestPrintClients: the curl command carries the files and the body the
// start-up check sent.
func TestPrintClients(t *testing.T) {
	var out bytes.Buffer
	printClients(&out, "https://127.0.0.1:8443/mcp", clientFiles{"certs/ca.pem", "certs/client.pem", "certs/client-key.pem"})
	for _, want := range []string{
		"curl --cacert certs/ca.pem --cert certs/client.pem --key certs/client-key.pem ",
		"-d '" + initializeBody + "' https://127.0.0.1:8443/mcp",
		"client key          certs/client-key.pem",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("printed\n%s\nwithout %q", out.String(), want)
		}
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

// startRun runs the example with args until the test ends, and returns the
// URL it serves at once it has logged it. At the end of the test it stops
// the example as SIGTERM would and checks that it shut down cleanly.
func startRun(t *testing.T, args []string) *started {
	t.Helper()
	s := &started{stdout: &syncBuffer{}, stderr: &syncBuffer{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, s.stdout, s.stderr) }()
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
