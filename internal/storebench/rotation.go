package storebench

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mcpauth/mcpauth"
	"github.com/mcpauth/mcpauth/authserver"
)

// A Refresher is an authorization server on a store, holding one refresh
// token that Rotate redeems for the next: what a refresh costs on that
// store, through the token endpoint.
type Refresher struct {
	h     http.Handler
	token string
}

const (
	issuer   = "https://as.example"
	redirect = "http://127.0.0.1/callback"
	password = "bench-password"
)

var (
	hiddenRE = regexp.MustCompile(`<input type="hidden" name="(tx|csrf)" value="([^"]*)">`)
	actionRE = regexp.MustCompile(`<form method="post" action="([^"]*)">`)
)

// NewRefresher starts an authorization server on st and gets a refresh
// token through the authorization code flow, in process.
func NewRefresher(b testing.TB, st mcpauth.Store) *Refresher {
	b.Helper()
	users, err := authserver.NewPasswordUsers(&authserver.PasswordUsersOptions{Iterations: 1000})
	if err != nil {
		b.Fatal(err)
	}
	if err := users.Add("alice", password, authserver.User{Subject: "alice"}); err != nil {
		b.Fatal(err)
	}
	as, err := authserver.New(&authserver.Options{
		Issuer:    issuer,
		Resources: []string{issuer + "/mcp"},
		Scopes:    []string{"tools:read"},
		Clients:   []authserver.Client{{ID: "app", RedirectURIs: []string{redirect}}},
		Users:     users,
		Store:     st,
		Secret:    []byte("bench-secret-0123456789abcdefghijklmnop"),
		Events:    discard{},
	})
	if err != nil {
		b.Fatal(err)
	}
	r := &Refresher{h: as}
	r.token = r.login(b)
	return r
}

type discard struct{}

func (discard) Record(context.Context, mcpauth.Event) {}

// Rotate redeems the refresh token for a new pair and keeps the new one.
func (r *Refresher) Rotate(b testing.TB) {
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r.token}, "client_id": {"app"}}
	rec := r.do(b, "POST", "/token", form, nil)
	var m struct {
		RefreshToken string `json:"refresh_token"`
	}
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &m) != nil || m.RefreshToken == "" {
		b.Fatalf("refresh: %d %s", rec.Code, rec.Body)
	}
	r.token = m.RefreshToken
}

func (r *Refresher) do(b testing.TB, method, path string, form url.Values, cookies []*http.Cookie) *httptest.ResponseRecorder {
	var req *http.Request
	if method == "GET" {
		req = httptest.NewRequest(method, issuer+path, nil)
	} else {
		req = httptest.NewRequest(method, issuer+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	r.h.ServeHTTP(rec, req)
	return rec
}

// login runs the authorization code flow with PKCE as a browser would
// and returns the refresh token.
func (r *Refresher) login(b testing.TB) string {
	b.Helper()
	verifier := rand.Text() + rand.Text()
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{
		"response_type": {"code"}, "client_id": {"app"}, "redirect_uri": {redirect}, "state": {"s"},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
	}
	rec := r.do(b, "GET", "/authorize?"+q.Encode(), nil, nil)
	cookies := rec.Result().Cookies()
	submit := func(rec *httptest.ResponseRecorder, set url.Values) *httptest.ResponseRecorder {
		body := rec.Body.String()
		m := actionRE.FindStringSubmatch(body)
		if rec.Code != http.StatusOK || m == nil {
			b.Fatalf("no form: %d %.300s", rec.Code, body)
		}
		for _, h := range hiddenRE.FindAllStringSubmatch(body, -1) {
			set.Set(h[1], h[2])
		}
		return r.do(b, "POST", m[1], set, cookies)
	}
	rec = submit(rec, url.Values{"username": {"alice"}, "password": {password}})
	rec = submit(rec, url.Values{"decision": {"approve"}})
	loc, err := url.Parse(rec.Header().Get("Location"))
	if rec.Code != http.StatusSeeOther || err != nil || loc.Query().Get("code") == "" {
		b.Fatalf("approve: %d %q", rec.Code, rec.Header().Get("Location"))
	}
	form := url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "code_verifier": {verifier}, "client_id": {"app"}, "redirect_uri": {redirect}}
	rec = r.do(b, "POST", "/token", form, nil)
	var m struct {
		RefreshToken string `json:"refresh_token"`
	}
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &m) != nil || m.RefreshToken == "" {
		b.Fatalf("exchange: %d %s", rec.Code, rec.Body)
	}
	return m.RefreshToken
}

// Rotations measures refresh-token rotations on st beside rotations on
// an in-memory store, in alternating batches of the same run, and reports
// rotations per second of each and their ratio (memory / st: how many
// times slower st is).
func Rotations(b *testing.B, st mcpauth.Store) {
	ours := NewRefresher(b, st)
	base := NewRefresher(b, mcpauth.NewMemoryStore())
	const batch = 8
	var tOurs, tBase time.Duration
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		for range batch {
			ours.Rotate(b)
		}
		mid := time.Now()
		for range batch {
			base.Rotate(b)
		}
		tOurs += mid.Sub(start)
		tBase += time.Since(mid)
		n += batch
	}
	b.ReportMetric(float64(n)/tOurs.Seconds(), "rotations/s")
	b.ReportMetric(float64(n)/tBase.Seconds(), "memory-rotations/s")
	b.ReportMetric(float64(tOurs)/float64(tBase), "ratio")
}
