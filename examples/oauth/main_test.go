package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
)

// protocolVersions are the versions the tests' client asks for.
var protocolVersions = []string{"2025-11-25", "2026-07-28"}

// testIterations keeps the password hashes of the tests fast.
const testIterations = 1000

// startHandler serves newHandler on httptest with the given users, the
// issuer being the test server's URL (the listener exists first).
func startHandler(t *testing.T, users []userEntry) (issuer string, h *handler) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer = "http://" + ln.Addr().String()
	h, err = newHandler(config{issuer: issuer, users: users, iterations: testIterations, logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: h}}
	srv.Start()
	t.Cleanup(func() { srv.Close(); h.Close() })
	if srv.URL != issuer {
		t.Fatalf("server at %s, issuer %s", srv.URL, issuer)
	}
	return issuer, h
}

var (
	hiddenRE = regexp.MustCompile(`<input type="hidden" name="([a-z_]+)" value="([^"]*)">`)
	actionRE = regexp.MustCompile(`<form method="post" action="([^"]*)">`)
)

// browser is a Go HTTP client with cookies that does not follow
// redirects: the user's browser.
type browser struct{ c *http.Client }

func newBrowser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{&http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

type page struct {
	url    *url.URL
	status int
	header http.Header
	body   string
}

func (b *browser) do(req *http.Request) (*page, error) {
	resp, err := b.c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	return &page{req.URL, resp.StatusCode, resp.Header, string(body)}, nil
}

// submit fills the page's form (its hidden fields, such as the CSRF token,
// and set) and posts it.
func (b *browser) submit(p *page, set url.Values) (*page, error) {
	m := actionRE.FindStringSubmatch(p.body)
	if m == nil {
		return nil, fmt.Errorf("no form on the page (%d): %.600s", p.status, p.body)
	}
	action, err := p.url.Parse(html.UnescapeString(m[1]))
	if err != nil {
		return nil, err
	}
	form := url.Values{}
	for _, h := range hiddenRE.FindAllStringSubmatch(p.body, -1) {
		form.Set(h[1], html.UnescapeString(h[2]))
	}
	for k, v := range set {
		form[k] = v
	}
	req, _ := http.NewRequest(http.MethodPost, action.String(), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

// fetcher is go-sdk's AuthorizationCodeFetcher played by a user who logs in
// as username with password and approves; it counts the authorizations.
func fetcher(username, password string, count *atomic.Int32) auth.AuthorizationCodeFetcher {
	return func(ctx context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
		count.Add(1)
		b := newBrowser()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, args.URL, nil)
		if err != nil {
			return nil, err
		}
		p, err := b.do(req)
		if err != nil {
			return nil, err
		}
		if p.status != http.StatusOK {
			return nil, fmt.Errorf("authorize: %d %.600s", p.status, p.body)
		}
		if p, err = b.submit(p, url.Values{"username": {username}, "password": {password}}); err != nil {
			return nil, err
		}
		if !strings.Contains(p.body, ">Approve</button>") {
			return nil, fmt.Errorf("no consent page after the login: %d %.600s", p.status, p.body)
		}
		if p, err = b.submit(p, url.Values{"decision": {"approve"}}); err != nil {
			return nil, err
		}
		if p.status != http.StatusSeeOther {
			return nil, fmt.Errorf("approve: %d %.600s", p.status, p.body)
		}
		back, err := url.Parse(p.header.Get("Location"))
		if err != nil {
			return nil, err
		}
		q := back.Query()
		return &auth.AuthorizationResult{Code: q.Get("code"), State: q.Get("state"), Iss: q.Get("iss")}, nil
	}
}

// connectOAuth connects go-sdk's MCP client to endpoint, registering
// itself and logging in as username.
func connectOAuth(t *testing.T, endpoint, protocolVersion, username, password string, count *atomic.Int32) (*mcp.ClientSession, error) {
	t.Helper()
	h, err := auth.NewAuthorizationCodeHandler(&auth.AuthorizationCodeHandlerConfig{
		DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{Metadata: &oauthex.ClientRegistrationMetadata{
			ClientName:              "oauth example test",
			RedirectURIs:            []string{"http://127.0.0.1:38117/callback"},
			TokenEndpointAuthMethod: "none",
			GrantTypes:              []string{"authorization_code", "refresh_token"},
		}},
		RedirectURL:              "http://127.0.0.1:38117/callback",
		AuthorizationCodeFetcher: fetcher(username, password, count),
	})
	if err != nil {
		t.Fatal(err)
	}
	c := mcp.NewClient(&mcp.Implementation{Name: "example-test", Version: "1"}, nil)
	transport := &mcp.StreamableClientTransport{Endpoint: endpoint, OAuthHandler: h, DisableStandaloneSSE: true}
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

// TestOAuthFlow: go-sdk's client discovers the authorization server from
// the 401, registers itself, the user logs in and approves, and the tools
// see the user's subject, roles and the granted scope.
func TestOAuthFlow(t *testing.T) {
	users, err := parseUsers("alice:alice-pass-1:admin|viewer, bob:bob-pass-2")
	if err != nil {
		t.Fatal(err)
	}
	issuer, _ := startHandler(t, users)
	for _, v := range protocolVersions {
		t.Run(v, func(t *testing.T) {
			var n atomic.Int32
			cs, err := connectOAuth(t, issuer+"/mcp", v, "alice", "alice-pass-1", &n)
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			checkTools(t, cs, map[string]any{"subject": "alice", "method": "oauth", "roles": []any{"admin", "viewer"}, "scopes": []any{scope}})
			if n.Load() != 1 {
				t.Errorf("%d authorizations, want 1", n.Load())
			}
		})
	}
	var n atomic.Int32
	cs, err := connectOAuth(t, issuer+"/mcp", protocolVersions[0], "bob", "bob-pass-2", &n)
	if err != nil {
		t.Fatalf("connect as bob: %v", err)
	}
	checkTools(t, cs, map[string]any{"subject": "bob", "method": "oauth", "roles": []any{}, "scopes": []any{scope}})
	// A wrong password gets the login form again, never a consent page.
	if _, err := connectOAuth(t, issuer+"/mcp", protocolVersions[0], "bob", "alice-pass-1", &n); err == nil {
		t.Error("connected with alice's password as bob")
	}
}

// TestRunDemoUser runs the command with no users: it derives the issuer
// from -addr, prints the demo user's password once with the client
// configurations, and the demo user can log in.
func TestRunDemoUser(t *testing.T) {
	slog.SetDefault(slog.New(slog.DiscardHandler))
	data := filepath.Join(t.TempDir(), "state.db")
	s := startRun(t, []string{"-addr", "127.0.0.1:0", "-data", data}, nil)
	if !strings.HasPrefix(s.url, "http://127.0.0.1:") || strings.HasSuffix(s.url, ":0/mcp") || !strings.HasSuffix(s.url, "/mcp") {
		t.Fatalf("serves at %s", s.url)
	}
	out := s.stdout.String()
	m := regexp.MustCompile(`password: (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no password printed:\n%s", out)
	}
	if strings.Count(out, m[1]) != 2 { // the password, and the export line
		t.Errorf("the password is printed %d times:\n%s", strings.Count(out, m[1]), out)
	}
	if !strings.Contains(out, "claude mcp add --transport http oauth-demo "+s.url+"\n") {
		t.Errorf("no Claude Code line for %s:\n%s", s.url, out)
	}
	if strings.Contains(s.stderr.String(), m[1]) {
		t.Errorf("the password is logged:\n%s", s.stderr)
	}
	var n atomic.Int32
	cs, err := connectOAuth(t, s.url, protocolVersions[0], "demo", m[1], &n)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	checkTools(t, cs, map[string]any{"subject": "demo", "method": "oauth", "roles": []any{"viewer"}, "scopes": []any{scope}})

	// With users configured, nothing about a demo user is printed.
	c := startRun(t, []string{"-addr", "127.0.0.1:0", "-data", filepath.Join(t.TempDir(), "state.db")}, map[string]string{envUsers: "carol:carol-pass"})
	if out := c.stdout.String(); strings.Contains(out, "password") || strings.Contains(out, "demo") && !strings.Contains(out, "oauth-demo") {
		t.Errorf("printed with users configured:\n%s", out)
	}
}

// TestUnauthenticated: a request without a token gets 401 with a challenge
// whose resource_metadata is the served document, at both well-known paths.
func TestUnauthenticated(t *testing.T) {
	issuer, _ := startHandler(t, []userEntry{{username: "alice", password: "pw"}})
	resp, err := http.Post(issuer+"/mcp", "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	challenge := resp.Header.Get("WWW-Authenticate")
	metaURL := issuer + "/.well-known/oauth-protected-resource/mcp"
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(challenge, "Bearer ") ||
		!strings.Contains(challenge, `resource_metadata="`+metaURL+`"`) {
		t.Fatalf("%d, WWW-Authenticate %q", resp.StatusCode, challenge)
	}
	for _, u := range []string{metaURL, issuer + "/.well-known/oauth-protected-resource"} {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		var meta oauthex.ProtectedResourceMetadata
		err = json.NewDecoder(resp.Body).Decode(&meta)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || meta.Resource != issuer+"/mcp" ||
			!reflect.DeepEqual(meta.AuthorizationServers, []string{issuer}) || !reflect.DeepEqual(meta.ScopesSupported, []string{scope}) {
			t.Errorf("%s: %d %+v %v", u, resp.StatusCode, meta, err)
		}
	}
	// The authorization server it names serves its metadata.
	resp, err = http.Get(issuer + "/.well-known/oauth-authorization-server")
	if err != nil {
		t.Fatal(err)
	}
	var asMeta oauthex.AuthServerMeta
	err = json.NewDecoder(resp.Body).Decode(&asMeta)
	resp.Body.Close()
	if err != nil || asMeta.Issuer != issuer || asMeta.RegistrationEndpoint == "" {
		t.Errorf("authorization server metadata: %+v %v", asMeta, err)
	}
}

const secretPW = "Sup3r-s3cret-pw"

func TestParseUsers(t *testing.T) {
	good := []struct {
		env  string
		want []userEntry
	}{
		{"", nil},
		{" , ", nil},
		{"alice:" + secretPW, []userEntry{{username: "alice", password: secretPW}}},
		{" alice:" + secretPW + ":admin|viewer ,\nbob:pw2:editor,", []userEntry{
			{username: "alice", password: secretPW, roles: []string{"admin", "viewer"}},
			{username: "bob", password: "pw2", roles: []string{"editor"}},
		}},
		{"a.b@example.com:" + secretPW, []userEntry{{username: "a.b@example.com", password: secretPW}}},
	}
	for _, tt := range good {
		got, err := parseUsers(tt.env)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parseUsers(%q) = %+v, %v; want %+v", tt.env, got, err, tt.want)
		}
	}
	for _, env := range []string{
		secretPW,                  // no password
		"alice:",                  // empty password
		":" + secretPW,            // empty username
		"alice:" + secretPW + ":", // empty role
		"alice:" + secretPW + ":a||b",
		"alice:" + secretPW + ":admin viewer",
		"alice:" + secretPW + ":x:" + secretPW, // a ':' in the password
		"alice:" + secretPW + ",alice:" + secretPW,
		"al ice:" + secretPW,
		strings.Repeat("u", 65) + ":" + secretPW,
		strings.Repeat("u:"+secretPW+",", 0) + func() string {
			var b strings.Builder
			for i := range maxUsers + 1 {
				fmt.Fprintf(&b, "u%d:%s,", i, secretPW)
			}
			return b.String()
		}(),
	} {
		users, err := parseUsers(env)
		if err == nil {
			t.Errorf("parseUsers(%.60q) = %+v, want an error", env, users)
			continue
		}
		if strings.Contains(err.Error(), secretPW) {
			t.Errorf("parseUsers(%.60q): the error shows the password: %v", env, err)
		}
		if !strings.HasPrefix(err.Error(), "mcpauth: ") {
			t.Errorf("parseUsers(%.60q): %v", env, err)
		}
	}
}

// TestConfigErrors: bad users, issuers and state flags stop it before it serves, print
// nothing, and an error never shows a password.
func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "state.db")
	goodSecret := base64.StdEncoding.EncodeToString(make([]byte, 32))
	for _, tt := range []struct {
		args          []string
		users, secret string
	}{
		{[]string{"-addr", "127.0.0.1:0", "-data", data}, "alice", ""},
		{[]string{"-addr", "127.0.0.1:0", "-data", data}, "alice:" + secretPW + ":bad role", ""},
		{[]string{"-addr", "127.0.0.1:0", "-data", data, "-issuer", "http://mcp.example.com"}, "", ""}, // http beyond loopback
		{[]string{"-addr", "127.0.0.1:0", "-data", data, "-issuer", "https://mcp.example.com/"}, "", ""},
		{[]string{"-addr", "127.0.0.1:0", "-data", data, "-issuer", "https://mcp.example.com?x=1"}, "", ""},
		{[]string{"-addr", "127.0.0.1:0", "-data", data, "-issuer", "mcp.example.com"}, "", ""},
		{[]string{"-no-such-flag"}, "", ""},
		// State: both stores; Redis without the shared secret or users;
		// a secret too short or not base64; an empty -data.
		{[]string{"-addr", "127.0.0.1:0", "-data", data, "-redis", "redis://127.0.0.1:1/0"}, "alice:" + secretPW, goodSecret},
		{[]string{"-addr", "127.0.0.1:0", "-redis", "redis://127.0.0.1:1/0"}, "alice:" + secretPW, ""},
		{[]string{"-addr", "127.0.0.1:0", "-redis", "redis://127.0.0.1:1/0"}, "", goodSecret},
		{[]string{"-addr", "127.0.0.1:0", "-redis", "redis://:" + secretPW + "@127.0.0.1:1/0"}, "alice:" + secretPW, goodSecret}, // nothing listens
		{[]string{"-addr", "127.0.0.1:0", "-redis", "http://" + secretPW}, "alice:" + secretPW, goodSecret},
		{[]string{"-addr", "127.0.0.1:0", "-data", data}, "", base64.StdEncoding.EncodeToString(make([]byte, 31))},
		{[]string{"-addr", "127.0.0.1:0", "-data", data}, "", "not base64 " + secretPW},
		{[]string{"-addr", "127.0.0.1:0", "-data", ""}, "", ""},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		var stdout, stderr syncBuffer
		env := map[string]string{envUsers: tt.users, envSecret: tt.secret}
		err := run(ctx, tt.args, func(k string) string { return env[k] }, &stdout, &stderr)
		if err == nil {
			t.Errorf("run(%q, %q) served", tt.args, tt.users)
		} else if strings.Contains(err.Error(), secretPW) || strings.Contains(stderr.String(), secretPW) {
			t.Errorf("run(%q): the error shows the password: %v", tt.args, err)
		}
		if stdout.String() != "" {
			t.Errorf("run(%q) printed %q", tt.args, stdout.String())
		}
	}
}

// TestPrintClients: each client's configuration names the URL and no
// credential: the clients discover the authorization server.
func TestPrintClients(t *testing.T) {
	const u = "https://mcp.example.com/mcp"
	var out strings.Builder
	printClients(&out, "oauth-demo", u)
	sections := map[string]string{}
	for _, s := range strings.Split(strings.TrimSpace(out.String()), "\n\n") {
		title, body, _ := strings.Cut(s, "\n")
		if i := strings.IndexAny(title, "(:"); i >= 0 {
			title = strings.TrimSpace(title[:i])
		}
		sections[title] = body
	}
	if got := strings.TrimSpace(sections["Claude Code"]); got != "claude mcp add --transport http oauth-demo "+u {
		t.Errorf("Claude Code: %s", got)
	}
	var vscode, cursor map[string]any
	if err := json.Unmarshal([]byte(sections["VS Code"]), &vscode); err != nil {
		t.Errorf("VS Code: %v", err)
	}
	if want := map[string]any{"servers": map[string]any{"oauth-demo": map[string]any{"type": "http", "url": u}}}; !reflect.DeepEqual(vscode, want) {
		t.Errorf("VS Code: %v", vscode)
	}
	if err := json.Unmarshal([]byte(sections["Cursor"]), &cursor); err != nil {
		t.Errorf("Cursor: %v", err)
	}
	if want := map[string]any{"mcpServers": map[string]any{"oauth-demo": map[string]any{"url": u}}}; !reflect.DeepEqual(cursor, want) {
		t.Errorf("Cursor: %v", cursor)
	}
	if g := sections["go-sdk client"]; !strings.Contains(g, "auth.NewAuthorizationCodeHandler") || !strings.Contains(g, `Endpoint: "`+u+`"`) {
		t.Errorf("go-sdk client:\n%s", g)
	}
	if strings.Contains(out.String(), "\"Authorization\"") || strings.Contains(out.String(), "Bearer") || strings.Contains(out.String(), "headers") {
		t.Errorf("a credential header:\n%s", out.String())
	}
}
