package authserver

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"golang.org/x/oauth2"
)

// headlessBrowser starts Debian's chromium for one test, or skips the test
// when it is not installed (fails under MCPAUTH_INTEGRATION=require).
func headlessBrowser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("MCPAUTH_INTEGRATION") == "require" {
			t.Fatal("chromium is required (MCPAUTH_INTEGRATION=require): apt-get install -y chromium")
		}
		t.Skip("chromium not found: apt-get install -y chromium")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(acancel)
	bctx, bcancel := chromedp.NewContext(actx)
	t.Cleanup(bcancel)
	return bctx
}

// callbackServer is the client's loopback redirect endpoint.
func callbackServer(t *testing.T) (string, <-chan url.Values) {
	got := make(chan url.Values, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/callback" {
			http.NotFound(w, r)
			return
		}
		select {
		case got <- r.URL.Query():
		default:
		}
		_, _ = w.Write([]byte("done"))
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/callback", got
}

func waitCallback(t *testing.T, got <-chan url.Values) url.Values {
	t.Helper()
	select {
	case q := <-got:
		return q
	case <-time.After(20 * time.Second):
		t.Fatal("the browser never reached the callback")
	}
	return nil
}

// browserLogin opens the authorization URL in chromium, signs in as alice
// and presses the button labelled label on the consent screen.
func browserLogin(t *testing.T, ctx context.Context, authURL, label string) {
	t.Helper()
	value := strings.ToLower(label)
	err := chromedp.Do(ctx,
		chromedp.Navigate(authURL),
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), "alice"),
		chromedp.SendKeys(chromedp.ID("password"), testPassword),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`button[value=`+value+`]`)),
	)
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`button[value=`+value+`]`)))
	if err != nil || text != label {
		t.Fatalf("button %q: %v", text, err)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`button[value=`+value+`]`))); err != nil {
		t.Fatalf("press %s: %v", label, err)
	}
}

func TestBrowserApprove(t *testing.T) {
	ctx := headlessBrowser(t)
	env := newEnv(t, nil)
	redirect, got := callbackServer(t)
	cfg := env.oauth2Config("app", "", redirect, "tools:read", "tools:write")
	verifier := oauth2.GenerateVerifier()
	browserLogin(t, ctx, cfg.AuthCodeURL("browser-state", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", env.resource())), "Approve")
	q := waitCallback(t, got)
	if q.Get("state") != "browser-state" || q.Get("iss") != env.as.Issuer() || q.Get("code") == "" {
		t.Fatalf("callback %v", q)
	}
	tok, err := cfg.Exchange(t.Context(), q.Get("code"), oauth2.VerifierOption(verifier), oauth2.SetAuthURLParam("resource", env.resource()))
	if err != nil {
		t.Fatal(err)
	}
	if p := verify(t, env, tok.AccessToken); p.Subject != "alice" || strings.Join(p.Scopes, " ") != "tools:read tools:write" {
		t.Errorf("principal %+v", p)
	}
}

func TestBrowserDeny(t *testing.T) {
	ctx := headlessBrowser(t)
	env := newEnv(t, nil)
	redirect, got := callbackServer(t)
	cfg := env.oauth2Config("app", "", redirect)
	browserLogin(t, ctx, cfg.AuthCodeURL("deny-state", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), "Deny")
	q := waitCallback(t, got)
	if q.Get("error") != "access_denied" || q.Get("state") != "deny-state" || q.Get("iss") != env.as.Issuer() || q.Has("code") {
		t.Fatalf("callback %v", q)
	}
}
