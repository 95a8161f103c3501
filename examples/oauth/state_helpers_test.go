package main

// The helpers of the tests that run the example as a process of its own
// (state_test.go): build it once, start it, kill it, and drive the OAuth
// flow by hand against whichever replica a step names.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"golang.org/x/oauth2"
)

// procTimeout bounds the life of every process a test starts.
const procTimeout = 3 * time.Minute

var (
	buildOnce sync.Once
	buildDir  string
	builtBin  string
	buildErr  error
)

// TestMain removes the binary the tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// binary builds the example once per test binary and returns its path.
func binary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the example: not in -short")
	}
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "mcpauth-oauth-example-"); buildErr != nil {
			return
		}
		builtBin = filepath.Join(buildDir, "oauth")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", builtBin, ".")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out.String())
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// A proc is one running process of the example.
type proc struct {
	t              *testing.T
	cmd            *exec.Cmd
	base           string // http://host:port it listens on
	stdout, stderr *syncBuffer
	done           chan struct{}
}

// testUsersEnv are the users every process of a test is given.
const (
	testUser     = "alice"
	testPassword = "alice-Pa55-word-for-tests"
	testUsersEnv = testUser + ":" + testPassword + ":admin"
)

// startProc starts the example with args and env (added to a minimal
// environment) and waits until it listens. It is killed when the test ends,
// and after procTimeout in any case.
func startProc(t *testing.T, args []string, env ...string) *proc {
	t.Helper()
	bin := binary(t)
	ctx, cancel := context.WithTimeout(context.Background(), procTimeout)
	p := &proc{t: t, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.CommandContext(ctx, bin, args...)
	p.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	p.cmd.Dir = t.TempDir()
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); cancel(); close(p.done) }()
	t.Cleanup(p.kill)
	const marker = "listening on "
	for deadline := time.Now().Add(30 * time.Second); ; {
		if out := p.stderr.String(); strings.Contains(out, marker) {
			p.base = "http://" + strings.Fields(out[strings.Index(out, marker)+len(marker):])[0]
			return p
		}
		select {
		case <-p.done:
			t.Fatalf("the example exited before listening:\n%s", p.stderr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the example did not listen:\n%s", p.stderr)
		}
	}
}

// kill kills the process (SIGKILL: no shutdown, no flush) and waits for it.
func (p *proc) kill() {
	if p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
	}
	<-p.done
}

// addr is the host:port p listens on.
func (p *proc) addr() string { return strings.TrimPrefix(p.base, "http://") }

// secrets collects every secret a test handled, to search the state for.
type secrets struct {
	mu   sync.Mutex
	list map[string]string // value → what it is
}

func (s *secrets) add(what, v string) {
	if s == nil || v == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.list == nil {
		s.list = map[string]string{}
	}
	s.list[v] = what
}

// oauthClient is a client registered by dynamic client registration.
type oauthClient struct {
	id, secret string // secret empty: a public client
}

const testRedirect = "http://127.0.0.1:38117/callback"

// register registers a client at base: confidential (client_secret_basic)
// or public.
func register(t *testing.T, base string, confidential bool, sec *secrets) oauthClient {
	t.Helper()
	method := "none"
	if confidential {
		method = "client_secret_basic"
	}
	body, _ := json.Marshal(map[string]any{
		"client_name":                "state test",
		"redirect_uris":              []string{testRedirect},
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"token_endpoint_auth_method": method,
	})
	resp, err := http.Post(base+"/register", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		ID     string `json:"client_id"`
		Secret string `json:"client_secret"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusCreated || out.ID == "" || confidential != (out.Secret != "") {
		t.Fatalf("register at %s: %d %+v %v", base, resp.StatusCode, out, err)
	}
	sec.add("client secret", out.Secret)
	return oauthClient{out.ID, out.Secret}
}

// at returns p as if it came from base: the next form goes there.
func (p *page) at(t *testing.T, base string) *page {
	t.Helper()
	b, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u := *p.url
	u.Scheme, u.Host = b.Scheme, b.Host
	q := *p
	q.url = &u
	return &q
}

// authorization is a login in progress: the browser and its consent page.
type authorization struct {
	b        *browser
	consent  *page  // nil when the consent was remembered
	code     string // then, the code the login answered with
	verifier string
}

// startAuthorization opens the authorization URL at authBase and logs in
// at loginBase, up to the consent page.
func startAuthorization(t *testing.T, issuer, authBase, loginBase string, c oauthClient, sec *secrets) *authorization {
	t.Helper()
	verifier := oauth2.GenerateVerifier()
	sec.add("code verifier", verifier)
	sec.add("password", testPassword)
	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {c.id},
		"redirect_uri":          {testRedirect},
		"state":                 {"st"},
		"scope":                 {scope + " offline_access"},
		"resource":              {issuer + "/mcp"},
		"code_challenge":        {oauth2.S256ChallengeFromVerifier(verifier)},
		"code_challenge_method": {"S256"},
	}
	a := &authorization{b: newBrowser(), verifier: verifier}
	req, _ := http.NewRequest(http.MethodGet, authBase+"/authorize?"+q.Encode(), nil)
	p, err := a.b.do(req)
	if err != nil || p.status != http.StatusOK {
		t.Fatalf("authorize at %s: %v %+v", authBase, err, p)
	}
	sec.addForm(p)
	if p, err = a.b.submit(p.at(t, loginBase), url.Values{"username": {testUser}, "password": {testPassword}}); err != nil {
		t.Fatal(err)
	}
	if p.status == http.StatusSeeOther {
		// The user approved this client before: the consent is
		// remembered, and the login answers with the code.
		a.code = a.codeOf(t, p, sec)
		return a
	}
	if !strings.Contains(p.body, ">Approve</button>") {
		t.Fatalf("no consent page after the login at %s: %d %.400s", loginBase, p.status, p.body)
	}
	sec.addForm(p)
	a.consent = p
	return a
}

// codeOf reads the code off the redirect back to the client.
func (a *authorization) codeOf(t *testing.T, p *page, sec *secrets) string {
	t.Helper()
	back, err := url.Parse(p.header.Get("Location"))
	if err != nil || back.Query().Get("code") == "" {
		t.Fatalf("redirect %q: no code", p.header.Get("Location"))
	}
	for _, c := range a.b.c.Jar.Cookies(p.url) {
		sec.add("cookie", c.Value)
	}
	code := back.Query().Get("code")
	sec.add("code", code)
	return code
}

// approve presses Approve at base and returns the code.
func (a *authorization) approve(t *testing.T, base string, sec *secrets) string {
	t.Helper()
	if a.consent == nil {
		return a.code
	}
	p, err := a.b.submit(a.consent.at(t, base), url.Values{"decision": {"approve"}})
	if err != nil || p.status != http.StatusSeeOther {
		t.Fatalf("approve at %s: %v %+v", base, err, p)
	}
	return a.codeOf(t, p, sec)
}

// addForm records the hidden fields of a page's form (transaction id,
// CSRF token).
func (s *secrets) addForm(p *page) {
	for _, h := range hiddenRE.FindAllStringSubmatch(p.body, -1) {
		s.add("form field "+h[1], h[2])
	}
}

// tokens is a token response.
type tokens struct {
	Access  string `json:"access_token"`
	Refresh string `json:"refresh_token"`
	Error   string `json:"error"`
}

// tokenRequest posts a token request to base and returns the status and
// the response.
func tokenRequest(t *testing.T, base string, c oauthClient, form url.Values, sec *secrets) (int, http.Header, tokens) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if c.secret == "" {
		form.Set("client_id", c.id)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if c.secret != "" {
		req.SetBasicAuth(url.QueryEscape(c.id), url.QueryEscape(c.secret))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("token at %s: %v", base, err)
	}
	defer resp.Body.Close()
	var tk tokens
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err := json.Unmarshal(b, &tk); err != nil {
		t.Fatalf("token at %s: %d %q", base, resp.StatusCode, b)
	}
	sec.add("access token", tk.Access)
	sec.add("refresh token", tk.Refresh)
	return resp.StatusCode, resp.Header, tk
}

// exchange redeems a code at base.
func exchange(t *testing.T, base string, c oauthClient, code, verifier string, sec *secrets) tokens {
	t.Helper()
	st, _, tk := tokenRequest(t, base, c, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {testRedirect}}, sec)
	if st != http.StatusOK || tk.Access == "" || tk.Refresh == "" {
		t.Fatalf("exchange at %s: %d %+v", base, st, tk)
	}
	return tk
}

// refresh redeems a refresh token at base.
func refresh(t *testing.T, base string, c oauthClient, token string, sec *secrets) (int, tokens) {
	t.Helper()
	st, _, tk := tokenRequest(t, base, c, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token}}, sec)
	return st, tk
}

// login runs the whole flow at base and returns the tokens.
func login(t *testing.T, issuer, base string, c oauthClient, sec *secrets) tokens {
	t.Helper()
	a := startAuthorization(t, issuer, base, base, c, sec)
	return exchange(t, base, c, a.approve(t, base, sec), a.verifier, sec)
}

// mcpStatus sends an MCP initialize to base with the access token and
// returns the status: 200 when the token is accepted.
func mcpStatus(t *testing.T, base, access string) (int, http.Header) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	body := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/mcp", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+access)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("mcp at %s: %v", base, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

// bearer adds an access token to every request.
type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

// whoamiAt calls the whoami tool at base with go-sdk's client and the
// access token, and returns the subject it reports.
func whoamiAt(t *testing.T, base, access string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := mcp.NewClient(&mcp.Implementation{Name: "state-test", Version: "1"}, nil)
	transport := &mcp.StreamableClientTransport{Endpoint: base + "/mcp", HTTPClient: &http.Client{Transport: bearer{access, http.DefaultTransport}}, DisableStandaloneSSE: true}
	cs, err := c.Connect(ctx, transport, nil)
	if err != nil {
		t.Fatalf("connect to %s: %v", base, err)
	}
	defer cs.Close()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "whoami"})
	if err != nil || res.IsError {
		t.Fatalf("whoami at %s: %+v %v", base, res, err)
	}
	sub, _ := res.StructuredContent.(map[string]any)["subject"].(string)
	return sub
}

// testSecret is an MCPAUTH_SECRET for the tests.
func testSecret(sec *secrets) string {
	v := base64.StdEncoding.EncodeToString([]byte("a secret of 32 bytes, for tests!"))
	sec.add("MCPAUTH_SECRET", v)
	sec.add("MCPAUTH_SECRET decoded", "a secret of 32 bytes, for tests!")
	return v
}
