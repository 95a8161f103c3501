package authserver

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"html/template"
	"net/http"
	"net/url"
	"strings"
)

// style is the pages' one stylesheet, allowed by its hash in the CSP.
const style = `body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem}form{margin-top:1.5rem}label{display:block;margin:.8rem 0 .3rem}
input[type=text],input[type=password]{width:100%;padding:.5rem;box-sizing:border-box}
button{padding:.5rem 1.2rem;margin:1rem .5rem 0 0;font-size:1rem}
.error{color:#a00}.warn{background:#fff4d6;padding:.6rem;border-radius:4px}
.muted{color:#666;font-size:.9rem}code{word-break:break-all}img.logo{max-height:48px}`

var styleHash = func() string {
	sum := sha256.Sum256([]byte(style))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}()

var pages = template.Must(template.New("pages").Parse(`
{{define "head"}}<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><meta name="referrer" content="no-referrer"><title>{{.Title}}</title><style>` + style + `</style></head><body>{{end}}
{{define "login"}}{{template "head" .}}
<h1>Sign in</h1>
<p><strong>{{.ClientName}}</strong> wants to access your account.</p>
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
<form method="post" action="{{.Action}}">
<input type="hidden" name="tx" value="{{.Tx}}"><input type="hidden" name="csrf" value="{{.CSRF}}">
<label for="username">Username</label><input type="text" id="username" name="username" autocomplete="username" autofocus required>
<label for="password">Password</label><input type="password" id="password" name="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form></body></html>{{end}}
{{define "consent"}}{{template "head" .}}
<h1>Authorize {{.ClientName}}?</h1>
{{if .LogoURI}}<p><img class="logo" src="{{.LogoURI}}" alt=""></p>{{end}}
<p><strong>{{.ClientName}}</strong> (client <code>{{.ClientID}}</code>{{if .ClientURI}}, <a href="{{.ClientURI}}" rel="noopener noreferrer" target="_blank">{{.ClientURI}}</a>{{end}}) asks to act as <strong>{{.Subject}}</strong>.</p>
{{if .Unverified}}<p class="muted">The application registered itself: its name is its own claim.</p>{{end}}
<p>After you decide, you are sent to <strong>{{.RedirectHost}}</strong>.</p>
{{if .Loopback}}<p class="warn">That is a program on your own computer. Approve only if you started this from an application you trust.</p>{{end}}
<p>It will get access to <strong>{{.Resource}}</strong>{{if .Scopes}} with these permissions:{{else}}, with no particular permissions.{{end}}</p>
{{if .Scopes}}<ul>{{range .Scopes}}<li><code>{{.}}</code></li>{{end}}</ul>{{end}}
<form method="post" action="{{.Action}}">
<input type="hidden" name="tx" value="{{.Tx}}"><input type="hidden" name="csrf" value="{{.CSRF}}">
<button type="submit" name="decision" value="approve">Approve</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form></body></html>{{end}}
{{define "app"}}{{template "head" .}}
<h1>{{.Title}}</h1>
<p>Return to <strong>{{.ClientName}}</strong> to finish.</p>
<p><a href="{{.Link}}">Open {{.ClientName}}</a></p>
<p class="muted">If nothing happens, the application may not be installed on this device.</p>
</body></html>{{end}}
{{define "error"}}{{template "head" .}}
<h1>{{.Title}}</h1><p>{{.Message}}</p>
<p class="muted">Return to the application and start again.</p></body></html>{{end}}
`))

// pageData is what the pages show. Every value is escaped by html/template;
// URLs come from checked sources (https only for a client's own).
type pageData struct {
	Title, Error, Message           string
	Action, Tx, CSRF                string
	ClientName, ClientID            string
	ClientURI, LogoURI              string
	Subject, RedirectHost, Resource string
	Scopes                          []string
	Loopback, Unverified            bool
	Link                            template.URL
	formTargets                     []string // origins form submissions may redirect to
}

// writePage writes an HTML page with headers that keep it out of frames,
// caches and referrers, and a CSP that allows nothing but its stylesheet,
// https images, and forms posted here (followed by a redirect to the
// client, where the page has a form that leads there).
func (s *Server) writePage(w http.ResponseWriter, status int, name string, d *pageData) {
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, d); err != nil {
		status = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString("internal error")
	}
	formAction := "'self'"
	for _, o := range d.formTargets {
		formAction += " " + o
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src "+styleHash+"; img-src https:; form-action "+formAction+"; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (s *Server) errorPage(w http.ResponseWriter, status int, title, message string) {
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", retryAfterUnavailable)
	}
	s.writePage(w, status, "error", &pageData{Title: title, Message: message})
}

// formTarget returns the CSP source of a redirect URI's origin: browsers
// apply form-action to the redirect that answers a form, too.
func formTarget(redirectURI string) string {
	u, err := url.Parse(redirectURI)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") {
		return ""
	}
	if strings.Contains(u.Hostname(), ":") {
		// CSP has no syntax for an IPv6 literal: allow the scheme (this is
		// only ever http on [::1]).
		return u.Scheme + ":"
	}
	return u.Scheme + "://" + u.Host
}

// httpsOnly returns u if it is an https URL, else "": a client's logo and
// home page are shown only from https.
func httpsOnly(u string) string {
	if len(u) > maxURILen || !strings.HasPrefix(u, "https://") {
		return ""
	}
	p, err := url.Parse(u)
	if err != nil || p.Host == "" || p.User != nil {
		return ""
	}
	return u
}
