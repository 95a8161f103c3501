package authserver

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpauth/mcpauth"
	"github.com/mcpauth/mcpauth/internal/mcptest"
	"github.com/modelcontextprotocol/go-sdk/auth"
	"golang.org/x/oauth2"
)

// docServer serves client ID metadata documents over TLS on loopback.
type docServer struct {
	srv     *httptest.Server
	mu      sync.Mutex
	docs    map[string]func(w http.ResponseWriter, url string)
	fetches atomic.Int32
}

func newDocServer(t *testing.T) *docServer {
	d := &docServer{docs: map[string]func(http.ResponseWriter, string){}}
	d.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.fetches.Add(1)
		d.mu.Lock()
		h := d.docs[r.URL.Path]
		d.mu.Unlock()
		if h == nil {
			http.NotFound(w, r)
			return
		}
		h(w, d.srv.URL+r.URL.Path)
	}))
	t.Cleanup(d.srv.Close)
	return d
}

// serve serves a document at path made by doc from the document's URL.
func (d *docServer) serve(path, cacheControl string, doc func(id string) map[string]any) string {
	d.mu.Lock()
	d.docs[path] = func(w http.ResponseWriter, id string) {
		if cacheControl != "" {
			w.Header().Set("Cache-Control", cacheControl)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(doc(id))
	}
	d.mu.Unlock()
	return d.srv.URL + path
}

func (d *docServer) tlsConfig() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(d.srv.Certificate())
	return &tls.Config{RootCAs: pool}
}

var loopbackNet = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

func goodDoc(id string) map[string]any {
	return map[string]any{"client_id": id, "client_name": "Doc Client", "redirect_uris": []string{"http://127.0.0.1/callback"},
		"grant_types": []string{"authorization_code", "refresh_token"}, "token_endpoint_auth_method": "none", "logo_uri": "https://logo.example/l.png"}
}

func TestClientMetadataDocument(t *testing.T) {
	docs := newDocServer(t)
	env := newEnv(t, func(o *Options) {
		o.ClientMetadata.AllowedNetworks = loopbackNet
		o.ClientMetadata.TLSConfig = docs.tlsConfig()
	})
	id := docs.serve("/client.json", "max-age=60", goodDoc)
	cfg := env.oauth2Config(id, "", "http://127.0.0.1:5000/callback")
	verifier := oauth2.GenerateVerifier()
	b := newBrowser(t)
	p := b.login(env.srv.URL, b.get(cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier))), "alice", testPassword)
	for _, want := range []string{"Doc Client", id, "https://logo.example/l.png"} {
		if !strings.Contains(p.body, want) {
			t.Errorf("consent page lacks %q", want)
		}
	}
	back := b.decide(env.srv.URL, p, "approve").location(t)
	tok, err := cfg.Exchange(t.Context(), back.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if p := verify(t, env, tok.AccessToken); p.ClientID != id {
		t.Errorf("client_id %q", p.ClientID)
	}
	// One fetch served the authorization and the token request (max-age).
	if n := docs.fetches.Load(); n != 1 {
		t.Errorf("%d fetches", n)
	}
	env.clock.Advance(61 * time.Second)
	if _, err := env.as.lookupClient(t.Context(), id); err != nil || docs.fetches.Load() != 2 {
		t.Errorf("after max-age: %v, %d fetches", err, docs.fetches.Load())
	}
	// A redirect URI the document does not list is refused.
	q := env.authorizeQuery()
	q.Set("client_id", id)
	q.Set("redirect_uri", "https://elsewhere.example/cb")
	if p := newBrowser(t).get(env.url("/authorize?" + q.Encode())); p.status != 400 || p.header.Get("Location") != "" {
		t.Errorf("unlisted redirect: %d", p.status)
	}
}

func TestClientMetadataDocumentRefused(t *testing.T) {
	docs := newDocServer(t)
	env := newEnv(t, func(o *Options) {
		o.ClientMetadata.AllowedNetworks = loopbackNet
		o.ClientMetadata.TLSConfig = docs.tlsConfig()
	})
	with := func(change func(m map[string]any)) func(string) map[string]any {
		return func(id string) map[string]any {
			m := goodDoc(id)
			change(m)
			return m
		}
	}
	docs.mu.Lock()
	docs.docs["/redirect.json"] = func(w http.ResponseWriter, id string) {
		w.Header().Set("Location", docs.srv.URL+"/good.json")
		w.WriteHeader(http.StatusFound)
	}
	docs.docs["/big.json"] = func(w http.ResponseWriter, id string) {
		m := goodDoc(id)
		m["padding"] = strings.Repeat("p", maxDocumentSize)
		_ = json.NewEncoder(w).Encode(m)
	}
	docs.docs["/dup.json"] = func(w http.ResponseWriter, id string) {
		_, _ = w.Write([]byte(`{"client_id":"` + id + `","client_id":"x","client_name":"n","redirect_uris":["http://127.0.0.1/callback"]}`))
	}
	docs.mu.Unlock()
	docs.serve("/good.json", "", goodDoc)
	cases := map[string]string{
		docs.serve("/mismatch.json", "", with(func(m map[string]any) { m["client_id"] = docs.srv.URL + "/other.json" })):           "client_id_mismatch",
		docs.serve("/noname.json", "", with(func(m map[string]any) { delete(m, "client_name") })):                                  "no_client_name",
		docs.serve("/secret.json", "", with(func(m map[string]any) { m["client_secret"] = "s" })):                                  "client_secret",
		docs.serve("/jwt.json", "", with(func(m map[string]any) { m["token_endpoint_auth_method"] = "private_key_jwt" })):          "auth_method",
		docs.serve("/badredirect.json", "", with(func(m map[string]any) { m["redirect_uris"] = []string{"http://a.example/cb"} })): "invalid_redirect_uri",
		docs.srv.URL + "/redirect.json": "status_302",
		docs.srv.URL + "/big.json":      "too_large",
		docs.srv.URL + "/dup.json":      "document",
		docs.srv.URL + "/missing.json":  "status_404",
	}
	for id, reason := range cases {
		q := env.authorizeQuery()
		q.Set("client_id", id)
		q.Set("redirect_uri", "http://127.0.0.1:5000/callback")
		if p := newBrowser(t).get(env.url("/authorize?" + q.Encode())); p.status != 400 || p.header.Get("Location") != "" {
			t.Errorf("%s: %d", id, p.status)
		}
		found := false
		for _, e := range env.events.find(EventClientMetadata, mcpauth.OutcomeFailure) {
			if e.ClientID == id && e.Reason == reason {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no client_metadata event with reason %s", id, reason)
		}
	}
	// Not a document URL at all: no fetch.
	before := docs.fetches.Load()
	for _, id := range []string{docs.srv.URL, docs.srv.URL + "/", docs.srv.URL + "/a/../b.json", docs.srv.URL + "/x.json#f", strings.Replace(docs.srv.URL, "https://", "https://u:p@", 1) + "/x.json"} {
		if _, err := env.as.lookupClient(t.Context(), id); err == nil {
			t.Errorf("%s accepted", id)
		}
	}
	if docs.fetches.Load() != before {
		t.Error("fetched a URL that is not a document URL")
	}
}

// Without AllowedNetworks, a document on loopback is never fetched: the
// address is checked when dialling.
func TestClientMetadataSSRF(t *testing.T) {
	docs := newDocServer(t)
	env := newEnv(t, func(o *Options) { o.ClientMetadata.TLSConfig = docs.tlsConfig() })
	id := docs.serve("/client.json", "", goodDoc)
	localhost := strings.Replace(id, "127.0.0.1", "localhost", 1)
	for _, u := range []string{id, localhost} {
		if _, err := env.as.lookupClient(t.Context(), u); err == nil {
			t.Errorf("%s fetched", u)
		}
	}
	if n := docs.fetches.Load(); n != 0 {
		t.Errorf("%d requests reached the loopback server", n)
	}
	e := env.events.find(EventClientMetadata, mcpauth.OutcomeFailure)
	if len(e) != 2 || e[0].Reason != "blocked_address" {
		t.Errorf("events %+v", e)
	}
}

func TestReachable(t *testing.T) {
	for _, tt := range []struct {
		addr string
		ok   bool
	}{
		{"93.184.216.34", true}, {"2606:2800:220:1:248:1893:25c8:1946", true},
		{"127.0.0.1", false}, {"::1", false}, {"10.1.2.3", false}, {"172.16.0.1", false}, {"192.168.1.1", false},
		{"169.254.169.254", false}, {"fd00:ec2::254", false}, {"fe80::1", false}, {"0.0.0.0", false}, {"::", false},
		{"224.0.0.1", false}, {"ff02::1", false}, {"100.64.0.1", false}, {"::ffff:127.0.0.1", false}, {"::ffff:10.0.0.1", false},
		{"64:ff9b::a00:1", false}, {"2002:a00:1::", false}, {"255.255.255.255", false}, {"198.18.0.1", false},
	} {
		if got := reachable(netip.MustParseAddr(tt.addr), nil); got != tt.ok {
			t.Errorf("reachable(%s) = %v", tt.addr, got)
		}
	}
	if !reachable(netip.MustParseAddr("127.0.0.1"), loopbackNet) {
		t.Error("allowed network refused")
	}
}

func TestMaxAge(t *testing.T) {
	f := &metadataFetcher{defaultMaxAge: 5 * time.Minute}
	for _, tt := range []struct {
		cc   []string
		want time.Duration
	}{
		{nil, 5 * time.Minute},
		{[]string{"max-age=60"}, time.Minute},
		{[]string{"public, max-age=120"}, 2 * time.Minute},
		{[]string{"max-age=999999"}, 24 * time.Hour},
		{[]string{"no-store"}, 0},
		{[]string{"max-age=60, no-cache"}, 0},
		{[]string{"max-age=abc"}, 5 * time.Minute},
	} {
		if got := f.maxAge(tt.cc); got != tt.want {
			t.Errorf("maxAge(%q) = %v, want %v", tt.cc, got, tt.want)
		}
	}
}

// go-sdk's client with a client ID metadata document, served over TLS on
// loopback (allowed for the test).
func TestMCPClientMetadataDocument(t *testing.T) {
	for _, mode := range mcptest.Modes {
		t.Run(mode.Name, func(t *testing.T) {
			docs := newDocServer(t)
			env := newEnv(t, func(o *Options) {
				o.ClientMetadata.AllowedNetworks = loopbackNet
				o.ClientMetadata.TLSConfig = docs.tlsConfig()
			})
			id := docs.serve("/oauth/client.json", "", goodDoc)
			endpoint := env.mountMCP(mode)
			var n atomic.Int32
			h, err := auth.NewAuthorizationCodeHandler(&auth.AuthorizationCodeHandlerConfig{
				ClientIDMetadataDocumentConfig: &auth.ClientIDMetadataDocumentConfig{URL: id},
				RedirectURL:                    "http://127.0.0.1:38112/callback",
				AuthorizationCodeFetcher:       env.fetcher("alice", &n),
			})
			if err != nil {
				t.Fatal(err)
			}
			cs, err := connect(t, mode, endpoint, h)
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			if out := whoami(t, cs, "alice", "editor"); out.ClientID != id {
				t.Errorf("client %q", out.ClientID)
			}
		})
	}
}
