package authserver

import (
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// testUsers has alice (an editor) and bob (an admin who may grant only
// tools:read), hashed with few iterations to keep the tests fast.
func testUsers(t *testing.T) Users {
	t.Helper()
	u, err := NewPasswordUsers(&PasswordUsersOptions{Iterations: testIterations})
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Add("alice", testPassword, User{Subject: "alice", Roles: []string{"editor"}}); err != nil {
		t.Fatal(err)
	}
	if err := u.Add("bob", testPassword, User{Subject: "bob", Roles: []string{"admin"}, Scopes: []string{"tools:read"}}); err != nil {
		t.Fatal(err)
	}
	return u
}

// browser is a Go HTTP client with cookies that does not follow
// redirects, standing in for a user's browser.
type browser struct {
	t *testing.T
	c *http.Client
}

func newBrowser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// page is a response the browser got.
type page struct {
	status int
	header http.Header
	body   string
}

func (b *browser) get(u string) *page {
	b.t.Helper()
	resp, err := b.c.Get(u)
	if err != nil {
		b.t.Fatal(err)
	}
	return readPage(b.t, resp)
}

func (b *browser) post(u string, form url.Values) *page {
	b.t.Helper()
	resp, err := b.c.PostForm(u, form)
	if err != nil {
		b.t.Fatal(err)
	}
	return readPage(b.t, resp)
}

func readPage(t *testing.T, resp *http.Response) *page {
	t.Helper()
	defer resp.Body.Close()
	var sb strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return &page{status: resp.StatusCode, header: resp.Header, body: sb.String()}
}

var (
	hiddenRE = regexp.MustCompile(`<input type="hidden" name="(tx|csrf)" value="([^"]*)">`)
	actionRE = regexp.MustCompile(`<form method="post" action="([^"]*)">`)
)

// form returns the page's form action and hidden fields.
func (p *page) form(t *testing.T) (action string, fields url.Values) {
	t.Helper()
	m := actionRE.FindStringSubmatch(p.body)
	if m == nil {
		t.Fatalf("no form on the page (%d): %.600s", p.status, p.body)
	}
	fields = url.Values{}
	for _, h := range hiddenRE.FindAllStringSubmatch(p.body, -1) {
		fields.Set(h[1], h[2])
	}
	return m[1], fields
}

// login fills the login form of p.
func (b *browser) login(base string, p *page, username, password string) *page {
	b.t.Helper()
	action, f := p.form(b.t)
	f.Set("username", username)
	f.Set("password", password)
	return b.post(base+action, f)
}

// decide presses Approve or Deny on the consent page p.
func (b *browser) decide(base string, p *page, decision string) *page {
	b.t.Helper()
	action, f := p.form(b.t)
	f.Set("decision", decision)
	return b.post(base+action, f)
}

// location is where a redirect sends the browser.
func (p *page) location(t *testing.T) *url.URL {
	t.Helper()
	if p.status != http.StatusSeeOther {
		t.Fatalf("not a redirect: %d %.600s", p.status, p.body)
	}
	u, err := url.Parse(p.header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// authorize runs the whole browser part: the authorization URL, the login
// and the decision; it returns the redirect back to the client.
func (env *testEnv) authorize(authURL, username, decision string) *url.URL {
	env.t.Helper()
	b := newBrowser(env.t)
	p := b.get(authURL)
	if p.status != 200 {
		env.t.Fatalf("authorize: %d %.600s", p.status, p.body)
	}
	p = b.login(env.srv.URL, p, username, testPassword)
	if p.status == http.StatusSeeOther {
		return p.location(env.t) // a remembered consent
	}
	if !strings.Contains(p.body, ">Approve</button>") {
		env.t.Fatalf("no consent page: %d %.600s", p.status, p.body)
	}
	return b.decide(env.srv.URL, p, decision).location(env.t)
}
