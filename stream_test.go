package mcpauth_test

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpauth/mcpauth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// streamEndBound is how long a test waits for a stream to end after its
// credential did. Streams end within a revocation check interval (50 ms
// here) or at once; the bound only stops a broken test, it is not a
// figure anything is measured against.
const streamEndBound = 30 * time.Second

// events collects the events a Require reports.
type events struct {
	mu  sync.Mutex
	all []mcpauth.Event
}

func (c *events) Record(_ context.Context, e mcpauth.Event) {
	c.mu.Lock()
	c.all = append(c.all, e)
	c.mu.Unlock()
}

func (c *events) ended(reason string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, e := range c.all {
		if e.Detail == "open request ended" && e.Reason == reason {
			n++
		}
	}
	return n
}

// streamServer is an MCP server with one subscribable resource and a tool
// that runs until its context ends or release is closed.
func streamServer(started chan<- struct{}, release <-chan struct{}) *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "stream", Version: "1"}, &mcp.ServerOptions{
		SubscribeHandler:   func(context.Context, *mcp.SubscribeRequest) error { return nil },
		UnsubscribeHandler: func(context.Context, *mcp.UnsubscribeRequest) error { return nil },
	})
	s.AddResource(&mcp.Resource{URI: "file:///watched", Name: "watched"}, func(context.Context, *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: "file:///watched", Text: "x"}}}, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "wait"}, func(ctx context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, struct{}, error) {
		started <- struct{}{}
		select {
		case <-ctx.Done():
		case <-release:
		case <-time.After(streamEndBound):
		}
		return &mcp.CallToolResult{}, struct{}{}, nil
	})
	return s
}

// rawClient speaks Streamable HTTP by hand, so that a test sees exactly
// when the server ends a stream.
type rawClient struct {
	url, version string
	header       http.Header // the credential
	session      string
}

func (c *rawClient) do(t *testing.T, method, body string, extra map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, c.url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range c.header {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "application/json, text/event-stream")
	if method == http.MethodGet {
		req.Header.Set("Accept", "text/event-stream")
	} else {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Mcp-Protocol-Version", c.version)
	if c.session != "" {
		req.Header.Set("Mcp-Session-Id", c.session)
	}
	for k, v := range extra {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// call sends one message and reads the whole answer.
func (c *rawClient) call(t *testing.T, body string, extra map[string]string) (int, string) {
	t.Helper()
	resp := c.do(t, http.MethodPost, body, extra)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if id := resp.Header.Get("Mcp-Session-Id"); id != "" {
		c.session = id
	}
	return resp.StatusCode, string(b)
}

// stream reads the SSE data lines of resp into a channel, closed at the
// end of the stream.
func stream(resp *http.Response) <-chan string {
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data:"); ok {
				lines <- data
			}
		}
	}()
	return lines
}

// waitFor reads lines until one contains want.
func waitFor(t *testing.T, lines <-chan string, want string, poke func()) {
	t.Helper()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(streamEndBound)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the stream ended before it carried %s", want)
			}
			if strings.Contains(l, want) {
				return
			}
		case <-tick.C:
			if poke != nil {
				poke()
			}
		case <-deadline:
			t.Fatalf("no %s on the stream", want)
		}
	}
}

// waitEvent waits for the event that says an open request ended.
func waitEvent(t *testing.T, ev *events, reason string) {
	t.Helper()
	deadline := time.Now().Add(streamEndBound)
	for ev.ended(reason) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no event of an open request ended (%s)", reason)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitEnd waits for the end of a stream and returns what it still
// carried.
func waitEnd(t *testing.T, lines <-chan string) (rest []string) {
	t.Helper()
	deadline := time.After(streamEndBound)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				return rest
			}
			rest = append(rest, l)
		case <-deadline:
			t.Fatal("the stream is still open after its credential ended")
		}
	}
}

// toolCall calls the tool that runs until its request ends, and returns
// the lines of the answer once the tool runs: "status: <code>" first, then
// the body's lines. go-sdk answers a 2025-11-25 tool call only when the
// tool returns, so the call runs in its own goroutine.
func toolCall(t *testing.T, c *rawClient, _ *mcp.Server, started <-chan struct{}) <-chan string {
	lines := make(chan string, 64)
	req, err := http.NewRequest(http.MethodPost, c.url, strings.NewReader(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"wait","arguments":{}}}`))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range c.header {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Mcp-Protocol-Version", c.version)
	if c.session != "" {
		req.Header.Set("Mcp-Session-Id", c.session)
	}
	go func() {
		defer close(lines)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			lines <- "error: " + err.Error()
			return
		}
		defer resp.Body.Close()
		lines <- fmt.Sprintf("status: %d", resp.StatusCode)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	select {
	case <-started:
	case <-time.After(streamEndBound):
		t.Fatal("the tool did not start")
	}
	return lines
}

// TestStreamEndsWithCredential opens each kind of long-lived request with a
// credential, then ends the credential: by expiry, by revocation in this
// process, and by a revocation that another replica recorded in the shared
// Store. Each stream must end, an event must say why, and the same
// credential must then be refused.
func TestStreamEndsWithCredential(t *testing.T) {
	_, signingKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	const issuer = "https://as.example.com"
	iss, err := mcpauth.NewJWTIssuer(mcpauth.JWTIssuerOptions{Issuer: issuer, Key: signingKey, Audience: []string{"https://mcp.example.com/mcp"}})
	if err != nil {
		t.Fatal(err)
	}
	store := mcpauth.NewMemoryStore()
	verifier, err := mcpauth.NewJWTVerifier(mcpauth.JWTVerifierOptions{Issuers: []mcpauth.TrustedIssuer{iss.TrustedIssuer()}, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { verifier.Close() })

	// A credential case gives a request header, and the function that ends
	// the credential once the stream is open (nil: it expires by itself).
	type credential struct {
		header http.Header
		end    func()
		reason string
	}
	credentials := []struct {
		name string
		make func(t *testing.T, keys *mcpauth.APIKeys) credential
	}{
		{"apikey-expired", func(t *testing.T, keys *mcpauth.APIKeys) credential {
			key := newKey(t)
			if err := keys.Add(mcpauth.APIKey{Key: key, Subject: "alice", ExpiresAt: time.Now().Add(1500 * time.Millisecond)}); err != nil {
				t.Fatal(err)
			}
			return credential{http.Header{"X-Api-Key": {key}}, nil, "expired"}
		}},
		{"apikey-revoked", func(t *testing.T, keys *mcpauth.APIKeys) credential {
			key := newKey(t)
			if err := keys.Add(mcpauth.APIKey{Key: key, Subject: "alice"}); err != nil {
				t.Fatal(err)
			}
			return credential{http.Header{"Authorization": {"Bearer " + key}}, func() { keys.Revoke(key) }, "revoked"}
		}},
		{"jwt-expired", func(t *testing.T, _ *mcpauth.APIKeys) credential {
			// exp is in whole seconds: two seconds leaves at least one.
			tok, err := iss.Mint(mcpauth.TokenClaims{Subject: "alice", TTL: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			return credential{http.Header{"Authorization": {"Bearer " + tok}}, nil, "expired"}
		}},
		{"jwt-revoked", func(t *testing.T, _ *mcpauth.APIKeys) credential {
			tok, err := iss.Mint(mcpauth.TokenClaims{Subject: "alice"})
			if err != nil {
				t.Fatal(err)
			}
			return credential{http.Header{"Authorization": {"Bearer " + tok}}, func() {
				if err := verifier.Revoke(context.Background(), tok); err != nil {
					t.Error(err)
				}
			}, "revoked"}
		}},
		{"jwt-revoked-elsewhere", func(t *testing.T, _ *mcpauth.APIKeys) credential {
			tok, err := iss.Mint(mcpauth.TokenClaims{Subject: "alice"})
			if err != nil {
				t.Fatal(err)
			}
			p, err := verifier.Verify(context.Background(), tok)
			if err != nil {
				t.Fatal(err)
			}
			return credential{http.Header{"Authorization": {"Bearer " + tok}}, func() {
				if err := mcpauth.RevokeElsewhere(context.Background(), store, issuer, p.Claims["jti"].(string)); err != nil {
					t.Error(err)
				}
			}, "revoked"}
		}},
	}

	// A stream case opens a long-lived request and returns its data lines,
	// after it has carried something (so it is known to be open).
	type opener func(t *testing.T, c *rawClient, server *mcp.Server, started <-chan struct{}) <-chan string
	subscribe := `{"jsonrpc":"2.0","id":2,"method":"resources/subscribe","params":{"uri":"file:///watched"}}`
	updated := func(server *mcp.Server) func() {
		return func() {
			server.ResourceUpdated(context.Background(), &mcp.ResourceUpdatedNotificationParams{URI: "file:///watched"})
		}
	}
	streams := []struct {
		name      string
		version   string
		stateless bool
		open      opener
	}{
		{"2025-11-25/standalone-GET", "2025-11-25", false, func(t *testing.T, c *rawClient, server *mcp.Server, _ <-chan struct{}) <-chan string {
			if code, body := c.call(t, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`, nil); code != http.StatusOK || c.session == "" {
				t.Fatalf("initialize: %d %s", code, body)
			}
			if code, body := c.call(t, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, nil); code != http.StatusAccepted {
				t.Fatalf("initialized: %d %s", code, body)
			}
			if code, body := c.call(t, subscribe, nil); code != http.StatusOK {
				t.Fatalf("subscribe: %d %s", code, body)
			}
			resp := c.do(t, http.MethodGet, "", nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET: %d", resp.StatusCode)
			}
			lines := stream(resp)
			waitFor(t, lines, "notifications/resources/updated", updated(server))
			return lines
		}},
		{"2026-07-28/subscriptions-listen", "2026-07-28", true, func(t *testing.T, c *rawClient, server *mcp.Server, _ <-chan struct{}) <-chan string {
			resp := c.do(t, http.MethodPost, `{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}},"notifications":{"resourceSubscriptions":["file:///watched"]}}}`,
				map[string]string{"Mcp-Method": "subscriptions/listen"})
			if resp.StatusCode != http.StatusOK {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("listen: %d %s", resp.StatusCode, b)
			}
			lines := stream(resp)
			waitFor(t, lines, "notifications/resources/updated", updated(server))
			return lines
		}},
		{"stateless/tool-call", "2025-11-25", true, toolCall},
		{"2025-11-25/tool-call", "2025-11-25", false, func(t *testing.T, c *rawClient, server *mcp.Server, started <-chan struct{}) <-chan string {
			if code, body := c.call(t, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`, nil); code != http.StatusOK || c.session == "" {
				t.Fatalf("initialize: %d %s", code, body)
			}
			if code, body := c.call(t, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, nil); code != http.StatusAccepted {
				t.Fatalf("initialized: %d %s", code, body)
			}
			return toolCall(t, c, server, started)
		}},
	}

	for _, sc := range streams {
		for _, cc := range credentials {
			t.Run(sc.name+"/"+cc.name, func(t *testing.T) {
				t.Parallel()
				keys, err := mcpauth.NewAPIKeys()
				if err != nil {
					t.Fatal(err)
				}
				started, release := make(chan struct{}, 1), make(chan struct{})
				server := streamServer(started, release)
				ev := &events{}
				opts := &mcpauth.RequireOptions{Events: ev, RevocationCheckInterval: 50 * time.Millisecond}
				handler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, &mcp.StreamableHTTPOptions{Stateless: sc.stateless})
				srv := serveLoopback(t, mcpauth.Require(opts, keys, verifier)(handler))
				cred := cc.make(t, keys)
				c := &rawClient{url: srv.URL, version: sc.version, header: cred.header}
				lines := sc.open(t, c, server, started)
				if cred.end != nil {
					cred.end()
				}
				// go-sdk runs a tool call of a stateless 2025-11-25 server to
				// its end, whatever the request's context; once the request
				// has ended, the tool may return, and its result must not
				// reach the client.
				waitEvent(t, ev, cred.reason)
				close(release)
				// After the end nothing is delivered: no result (a tool's,
				// or the one go-sdk sends when a listen call returns), and
				// an unanswered call gets the refusal.
				for _, l := range waitEnd(t, lines) {
					if strings.Contains(l, `"result"`) || strings.HasPrefix(l, "status: 200") {
						t.Errorf("after the credential ended the client got %s", l)
					}
				}
				if n := ev.ended(cred.reason); n != 1 {
					t.Errorf("%d events of an open request ended (%s), want 1", n, cred.reason)
				}
				code, _ := c.call(t, `{"jsonrpc":"2.0","id":9,"method":"ping"}`, nil)
				if code != http.StatusUnauthorized {
					t.Errorf("a request with the ended credential: %d, want 401", code)
				}
			})
		}
	}
}

// TestStreamOutlivesOtherCredentials: ending one credential ends only its
// own requests; a stream of another credential of the same subject, and
// one of a credential that does not expire, stay open.
func TestStreamOutlivesOtherCredentials(t *testing.T) {
	keys, err := mcpauth.NewAPIKeys()
	if err != nil {
		t.Fatal(err)
	}
	doomed, kept := newKey(t), newKey(t)
	for _, k := range []string{doomed, kept} {
		if err := keys.Add(mcpauth.APIKey{Key: k, Subject: "alice"}); err != nil {
			t.Fatal(err)
		}
	}
	started, release := make(chan struct{}, 2), make(chan struct{})
	server := streamServer(started, release)
	ev := &events{}
	handler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, &mcp.StreamableHTTPOptions{Stateless: true})
	srv := serveLoopback(t, mcpauth.Require(&mcpauth.RequireOptions{Events: ev}, keys)(handler))
	open := func(key string) <-chan string {
		return toolCall(t, &rawClient{url: srv.URL, version: "2025-11-25", header: http.Header{"X-Api-Key": {key}}}, server, started)
	}
	doomedLines, keptLines := open(doomed), open(kept)
	keys.Revoke(doomed)
	waitEvent(t, ev, "revoked")
	// go-sdk runs a stateless 2025-11-25 tool call to its end: let the
	// tools return; the doomed call is answered with the refusal, the kept
	// one with its result.
	close(release)
	rest := waitEnd(t, doomedLines)
	if len(rest) == 0 || rest[0] != "status: 401" {
		t.Errorf("the revoked key's call got %q, want status 401", rest)
	}
	keptRest := waitEnd(t, keptLines)
	if len(keptRest) == 0 || keptRest[0] != "status: 200" || !strings.Contains(strings.Join(keptRest, "\n"), `"result"`) {
		t.Errorf("the other key's call got %q, want its result", keptRest)
	}
	if n := ev.ended("revoked"); n != 1 {
		t.Errorf("%d streams ended, want 1", n)
	}
}

// serveLoopback serves h on a loopback test server that closes, streams
// and all, when t ends.
func serveLoopback(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	return srv
}
