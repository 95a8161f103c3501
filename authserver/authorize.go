package authserver

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mcpauth/mcpauth"
)

// Store kinds of the authorization flow.
const (
	keyTransaction = "as.authz"
	keyCode        = "as.code"
	keyCodeUsed    = "as.code-used"
	keyConsent     = "as.consent"
)

// maxLoginFailures ends a transaction after this many wrong passwords.
const maxLoginFailures = 5

// maxStateLen bounds the state a client may have echoed.
const maxStateLen = 2048

// transaction is one authorization request between /authorize and the
// user's decision, stored under "as.authz:<sha256 of its id>". The id is
// in the pages' forms; the browser that started the request also holds a
// cookie with an HMAC of it, so the forms work in that browser only.
type transaction struct {
	ClientID      string       `json:"client_id"`
	RedirectURI   string       `json:"redirect_uri"`
	RedirectGiven bool         `json:"redirect_given,omitempty"`
	RedirectKind  redirectKind `json:"redirect_kind"`
	State         string       `json:"state,omitempty"`
	Challenge     string       `json:"code_challenge"`
	Resource      string       `json:"resource"`
	Scopes        []string     `json:"scopes"`
	CSRFHash      string       `json:"csrf_sha256"`
	Subject       string       `json:"sub,omitempty"`
	Roles         []string     `json:"roles,omitempty"`
	Failures      int          `json:"failures,omitempty"`
	Expires       int64        `json:"exp"` // Unix nanoseconds
}

// codeRecord is an authorization code, stored under "as.code:<sha256>".
type codeRecord struct {
	ClientID      string   `json:"client_id"`
	RedirectURI   string   `json:"redirect_uri"`
	RedirectGiven bool     `json:"redirect_given,omitempty"`
	Challenge     string   `json:"code_challenge"`
	Resource      string   `json:"resource"`
	Scopes        []string `json:"scopes"`
	Subject       string   `json:"sub"`
	Roles         []string `json:"roles,omitempty"`
	Refresh       bool     `json:"refresh,omitempty"` // a refresh token comes with the access token
	Expires       int64    `json:"exp"`
}

// handleAuthorize is the authorization endpoint (RFC 6749 §3.1, OAuth 2.1
// §4.1.1). It checks the client and the redirect URI before anything else:
// a request that fails there gets an error page, never a redirect. Other
// errors go back to the client. A good request gets the login form.
func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	var values url.Values
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		var err error
		if values, err = url.ParseQuery(r.URL.RawQuery); err != nil {
			s.refuse(w, r, "", "malformed", "The authorization request is malformed.")
			return
		}
	case http.MethodPost:
		body, err := readBody(r)
		if err == nil && !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
			err = errors.New("content type")
		}
		if err == nil {
			values, err = url.ParseQuery(string(body))
		}
		if err != nil {
			s.refuse(w, r, "", "malformed", "The authorization request is malformed.")
			return
		}
	default:
		w.Header().Set("Allow", "GET, POST")
		s.errorPage(w, http.StatusMethodNotAllowed, "Method not allowed", "The authorization endpoint takes GET and POST.")
		return
	}
	p, e := fromValues(values)
	if e != nil {
		s.refuse(w, r, "", "duplicate_parameter", "A parameter of the authorization request is given more than once.")
		return
	}

	c, err := s.lookupClient(r.Context(), p.get("client_id"))
	switch {
	case errors.Is(err, errUnknownClient):
		s.refuse(w, r, p.get("client_id"), "unknown_client", "The application is not known here.")
		return
	case err != nil:
		s.keyFault(r, "client lookup failed")
		s.errorPage(w, http.StatusServiceUnavailable, "Try again later", "The authorization server is temporarily unavailable.")
		return
	}
	redirectURI, given := p.get("redirect_uri"), true
	if redirectURI == "" {
		// OAuth 2.1 §4.1.1: may be left out when the client has just one,
		// which a loopback URI without a port cannot stand for.
		given = false
		if len(c.RedirectURIs) == 1 {
			redirectURI = c.RedirectURIs[0]
		}
	}
	kind, ok := s.matchRedirect(c.RedirectURIs, redirectURI)
	if !ok || (!given && kind == redirectLoopback) {
		s.refuse(w, r, c.ID, "redirect_uri", "The redirect URI is not registered for this application.")
		return
	}
	state := p.get("state")
	if len(state) > maxStateLen {
		s.refuse(w, r, c.ID, "state", "The state parameter is too long.")
		return
	}
	tx := &transaction{ClientID: c.ID, RedirectURI: redirectURI, RedirectGiven: given, RedirectKind: kind, State: state}

	// From here on, errors go back to the client.
	fail := func(e *oauthError) {
		s.record(r, mcpauth.Event{Kind: EventAuthorizationRequest, Outcome: mcpauth.OutcomeFailure, ClientID: c.ID, Reason: e.code})
		s.redirectError(w, r, tx, c, e)
	}
	switch rt := p.get("response_type"); {
	case rt == "":
		fail(errInvalidRequest("The response_type parameter is missing."))
		return
	case rt != "code":
		fail(&oauthError{code: "unsupported_response_type", desc: "Only the code response type is supported."})
		return
	}
	if !c.allows(grantCode) {
		fail(errUnauthorizedClient("The client may not use the authorization code grant."))
		return
	}
	// PKCE with S256 only (OAuth 2.1 §4.1.1, MCP): plain and a missing
	// method are refused, as is a missing challenge.
	challenge := p.get("code_challenge")
	if p.get("code_challenge_method") != "S256" || !validChallenge(challenge) {
		fail(errInvalidRequest("PKCE with code_challenge_method S256 is required."))
		return
	}
	tx.Challenge = challenge
	scopes, _, e := s.grant(p.get("scope"), s.allowedScopes(c), s.defaultScopesOf(c))
	if e != nil {
		fail(e)
		return
	}
	tx.Scopes = scopes
	res, e := s.resolveResource(p.get("resource"))
	if e != nil {
		fail(e)
		return
	}
	tx.Resource = res.raw
	if s.users == nil {
		fail(&oauthError{code: "server_error", desc: "No users can log in at this authorization server."})
		return
	}

	txID, err := randomToken("")
	if err != nil {
		fail(errServer)
		return
	}
	csrf, err := randomToken("")
	if err != nil {
		fail(errServer)
		return
	}
	tx.CSRFHash = sha256Hex(csrf)
	tx.Expires = s.now().Add(transactionTTL).UnixNano()
	if err := s.putTransaction(r.Context(), txID, tx, true); err != nil {
		s.keyFault(r, "store unavailable")
		fail(errUnavailable)
		return
	}
	s.setBinding(w, txID)
	s.loginPage(w, http.StatusOK, c, tx, txID, csrf, "")
}

// refuse answers an authorization request that cannot go back to the
// client with an error page.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, clientID, reason, message string) {
	s.record(r, mcpauth.Event{Kind: EventAuthorizationRequest, Outcome: mcpauth.OutcomeFailure, ClientID: clientID, Reason: reason})
	s.errorPage(w, http.StatusBadRequest, "This request cannot be completed", message)
}

func validChallenge(c string) bool {
	// base64url of a SHA-256 without padding (RFC 7636 §4.2).
	if len(c) != 43 {
		return false
	}
	_, err := base64.RawURLEncoding.Strict().DecodeString(c)
	return err == nil
}

func sha256Hex(v string) string {
	sum := sha256.Sum256([]byte(v))
	return hex.EncodeToString(sum[:])
}

func (s *Server) putTransaction(ctx context.Context, txID string, tx *transaction, create bool) error {
	b, err := json.Marshal(tx)
	if err != nil {
		return err
	}
	ttl := time.Unix(0, tx.Expires).Sub(s.now())
	if ttl <= 0 {
		ttl = time.Second
	}
	key := hashKey(keyTransaction, txID)
	if create {
		return s.store.Create(ctx, key, b, ttl)
	}
	return s.store.Set(ctx, key, b, ttl)
}

// errTransactionGone is a transaction that expired, was used, or never was.
var errTransactionGone = errors.New("mcpauth: authserver: no such transaction")

func (s *Server) getTransaction(ctx context.Context, txID string, take bool) (*transaction, error) {
	if !printableASCII(txID, 64) {
		return nil, errTransactionGone
	}
	key := hashKey(keyTransaction, txID)
	var b []byte
	var err error
	if take {
		b, err = s.store.Take(ctx, key)
	} else {
		b, err = s.store.Get(ctx, key)
	}
	if errors.Is(err, mcpauth.ErrNotFound) {
		return nil, errTransactionGone
	}
	if err != nil {
		return nil, err
	}
	tx := new(transaction)
	if err := json.Unmarshal(b, tx); err != nil {
		return nil, errors.New("mcpauth: authserver: bad transaction record")
	}
	if s.now().UnixNano() >= tx.Expires {
		return nil, errTransactionGone
	}
	return tx, nil
}

// The browser binding: a cookie per transaction, named after a hash of
// its id and holding an HMAC of it, limited to the authorization
// endpoint's paths.
func bindingName(txID string) string { return "mcpauth_tx_" + sha256Hex(txID)[:16] }

func (s *Server) bindingValue(txID string) string {
	m := hmac.New(sha256.New, s.cookieKey)
	m.Write([]byte("browser binding\x00"))
	m.Write([]byte(txID))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (s *Server) setBinding(w http.ResponseWriter, txID string) {
	http.SetCookie(w, &http.Cookie{
		Name:     bindingName(txID),
		Value:    s.bindingValue(txID),
		Path:     s.authorizePath,
		MaxAge:   int(transactionTTL / time.Second),
		HttpOnly: true,
		Secure:   s.secure,
		SameSite: http.SameSiteLaxMode,
	})
}

func (s *Server) clearBinding(w http.ResponseWriter, txID string) {
	http.SetCookie(w, &http.Cookie{Name: bindingName(txID), Value: "", Path: s.authorizePath, MaxAge: -1, HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteLaxMode})
}

func (s *Server) boundToBrowser(r *http.Request, txID string) bool {
	ck, err := r.Cookie(bindingName(txID))
	return err == nil && hmac.Equal([]byte(ck.Value), []byte(s.bindingValue(txID)))
}

// formRequest is a login or consent form, checked: its transaction exists,
// belongs to this browser, and the form's CSRF token is the transaction's.
type formRequest struct {
	p    params
	txID string
	tx   *transaction
	c    *client
}

func (s *Server) readForm(w http.ResponseWriter, r *http.Request, take bool) *formRequest {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		s.errorPage(w, http.StatusMethodNotAllowed, "Method not allowed", "This form must be posted.")
		return nil
	}
	body, err := readBody(r)
	if err != nil || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		s.errorPage(w, http.StatusBadRequest, "This request cannot be completed", "The form is malformed.")
		return nil
	}
	values, err := url.ParseQuery(string(body))
	p, e := fromValues(values)
	if err != nil || e != nil {
		s.errorPage(w, http.StatusBadRequest, "This request cannot be completed", "The form is malformed.")
		return nil
	}
	txID := p.get("tx")
	tx, err := s.getTransaction(r.Context(), txID, false)
	switch {
	case errors.Is(err, errTransactionGone):
		s.errorPage(w, http.StatusBadRequest, "This sign-in has expired", "The authorization request has expired or was already completed.")
		return nil
	case err != nil:
		s.keyFault(r, "store unavailable")
		s.errorPage(w, http.StatusServiceUnavailable, "Try again later", "The authorization server is temporarily unavailable.")
		return nil
	}
	if !s.boundToBrowser(r, txID) {
		s.record(r, mcpauth.Event{Kind: EventAuthorizationRequest, Outcome: mcpauth.OutcomeDenied, ClientID: tx.ClientID, Reason: "other_browser"})
		s.errorPage(w, http.StatusForbidden, "This request cannot be completed", "The authorization must be completed in the browser that started it.")
		return nil
	}
	csrf := p.get("csrf")
	if subtle.ConstantTimeCompare([]byte(sha256Hex(csrf)), []byte(tx.CSRFHash)) != 1 || csrf == "" {
		s.record(r, mcpauth.Event{Kind: EventAuthorizationRequest, Outcome: mcpauth.OutcomeDenied, ClientID: tx.ClientID, Reason: "csrf"})
		s.errorPage(w, http.StatusForbidden, "This request cannot be completed", "The form is not valid for this authorization request.")
		return nil
	}
	if take {
		// The decision is made once: of two posts, one finds it.
		if tx, err = s.getTransaction(r.Context(), txID, true); err != nil {
			s.errorPage(w, http.StatusBadRequest, "This sign-in has expired", "The authorization request has expired or was already completed.")
			return nil
		}
	}
	c, err := s.lookupClient(r.Context(), tx.ClientID)
	if err != nil {
		s.errorPage(w, http.StatusServiceUnavailable, "Try again later", "The application could not be loaded.")
		return nil
	}
	return &formRequest{p: p, txID: txID, tx: tx, c: c}
}

func (s *Server) loginPage(w http.ResponseWriter, status int, c *client, tx *transaction, txID, csrf, msg string) {
	s.writePage(w, status, "login", &pageData{
		Title: "Sign in", Error: msg, Action: s.issuerPath + pathLogin, Tx: txID, CSRF: csrf,
		ClientName: c.displayName(), formTargets: targets(tx),
	})
}

func targets(tx *transaction) []string {
	if t := formTarget(tx.RedirectURI); t != "" && tx.RedirectKind != redirectApp {
		return []string{t}
	}
	return nil
}

// handleLogin checks the login form. A wrong password shows the form
// again, up to maxLoginFailures times; then the transaction ends.
func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	f := s.readForm(w, r, false)
	if f == nil {
		return
	}
	tx, c := f.tx, f.c
	if tx.Subject != "" {
		s.errorPage(w, http.StatusBadRequest, "This request cannot be completed", "You have already signed in for this request.")
		return
	}
	username, password := f.p.get("username"), f.p.get("password")
	credential := userCredential(username)
	if err := s.lockout.Check(r, credential); err != nil {
		setRetryAfter(w, errLockedOut(err).retryAfter)
		s.errorPage(w, http.StatusTooManyRequests, "Too many attempts", "Too many failed sign-ins. Try again later.")
		return
	}
	var u *User
	var err error
	if username == "" || password == "" || len(username) > maxUsernameLen || len(password) > maxPasswordLen {
		err = ErrInvalidLogin
	} else {
		u, err = s.users.Authenticate(r.Context(), username, password)
	}
	if err == nil && (u == nil || u.Subject == "") {
		err = errors.New("mcpauth: authserver: Users returned no subject")
	}
	if err != nil {
		if !errors.Is(err, ErrInvalidLogin) {
			s.keyFault(r, "user directory unavailable")
			s.errorPage(w, http.StatusServiceUnavailable, "Try again later", "Signing in is temporarily unavailable.")
			return
		}
		s.record(r, mcpauth.Event{Kind: EventLogin, Outcome: mcpauth.OutcomeFailure, Reason: "login_failed", ClientID: c.ID, Subject: username})
		s.lockout.Fail(r, credential)
		tx.Failures++
		if tx.Failures >= maxLoginFailures {
			_, _ = s.store.Take(r.Context(), hashKey(keyTransaction, f.txID))
			s.clearBinding(w, f.txID)
			s.errorPage(w, http.StatusForbidden, "Too many attempts", "Too many wrong passwords for this request.")
			return
		}
		if err := s.putTransaction(r.Context(), f.txID, tx, false); err != nil {
			s.keyFault(r, "store unavailable")
			s.errorPage(w, http.StatusServiceUnavailable, "Try again later", "The authorization server is temporarily unavailable.")
			return
		}
		s.loginPage(w, http.StatusUnauthorized, c, tx, f.txID, f.p.get("csrf"), "The username or password is wrong.")
		return
	}
	s.record(r, mcpauth.Event{Kind: EventLogin, Outcome: mcpauth.OutcomeSuccess, ClientID: c.ID, Subject: u.Subject})
	tx.Subject, tx.Roles = u.Subject, u.Roles
	if u.Scopes != nil {
		tx.Scopes = intersect(tx.Scopes, u.Scopes)
	}
	if s.rememberFor > 0 {
		_, err := s.store.Get(r.Context(), s.consentKey(tx))
		if err == nil {
			if _, err := s.getTransaction(r.Context(), f.txID, true); err != nil {
				s.errorPage(w, http.StatusBadRequest, "This sign-in has expired", "The authorization request has expired or was already completed.")
				return
			}
			s.clearBinding(w, f.txID)
			s.record(r, mcpauth.Event{Kind: EventConsent, Outcome: mcpauth.OutcomeSuccess, ClientID: c.ID, Subject: tx.Subject, Detail: "remembered"})
			s.approve(w, r, tx, c)
			return
		}
		if !errors.Is(err, mcpauth.ErrNotFound) {
			s.keyFault(r, "store unavailable")
		}
	}
	if err := s.putTransaction(r.Context(), f.txID, tx, false); err != nil {
		s.keyFault(r, "store unavailable")
		s.errorPage(w, http.StatusServiceUnavailable, "Try again later", "The authorization server is temporarily unavailable.")
		return
	}
	s.consentPage(w, c, tx, f.txID, f.p.get("csrf"))
}

func (s *Server) consentPage(w http.ResponseWriter, c *client, tx *transaction, txID, csrf string) {
	host := tx.RedirectURI
	if u, err := url.Parse(tx.RedirectURI); err == nil && u.Host != "" {
		host = u.Host
		if u.Scheme != "https" && u.Scheme != "http" {
			host = u.Scheme + "://" + u.Host
		}
	}
	d := &pageData{
		Title: "Authorize " + c.displayName(), Action: s.issuerPath + pathConsent, Tx: txID, CSRF: csrf,
		ClientName: c.displayName(), ClientID: c.ID, ClientURI: httpsOnly(c.ClientURI), LogoURI: httpsOnly(c.LogoURI),
		Subject: tx.Subject, RedirectHost: host, Resource: tx.Resource, Scopes: tx.Scopes,
		Loopback: tx.RedirectKind == redirectLoopback, Unverified: c.Source == sourceDynamic,
		formTargets: targets(tx),
	}
	s.writePage(w, http.StatusOK, "consent", d)
}

// handleConsent takes the user's decision.
func (s *Server) handleConsent(w http.ResponseWriter, r *http.Request) {
	f := s.readForm(w, r, true)
	if f == nil {
		return
	}
	tx, c := f.tx, f.c
	s.clearBinding(w, f.txID)
	if tx.Subject == "" {
		s.errorPage(w, http.StatusBadRequest, "This request cannot be completed", "Sign in first.")
		return
	}
	switch f.p.get("decision") {
	case "approve":
		s.record(r, mcpauth.Event{Kind: EventConsent, Outcome: mcpauth.OutcomeSuccess, ClientID: c.ID, Subject: tx.Subject})
		if s.rememberFor > 0 {
			if err := s.store.Set(r.Context(), s.consentKey(tx), []byte("1"), s.rememberFor); err != nil {
				s.keyFault(r, "store unavailable")
			}
		}
		s.approve(w, r, tx, c)
	case "deny":
		s.record(r, mcpauth.Event{Kind: EventConsent, Outcome: mcpauth.OutcomeDenied, ClientID: c.ID, Subject: tx.Subject})
		s.redirectError(w, r, tx, c, &oauthError{code: "access_denied", desc: "The user denied the request."})
	default:
		s.errorPage(w, http.StatusBadRequest, "This request cannot be completed", "The form is malformed.")
	}
}

// consentKey names a remembered approval: user, client, resource and the
// exact set of scopes.
func (s *Server) consentKey(tx *transaction) string {
	return hashKey(keyConsent, tx.Subject+"\x00"+tx.ClientID+"\x00"+tx.Resource+"\x00"+strings.Join(tx.Scopes, " "))
}

// approve issues an authorization code and sends it to the client.
func (s *Server) approve(w http.ResponseWriter, r *http.Request, tx *transaction, c *client) {
	code, err := randomToken("")
	if err != nil {
		s.redirectError(w, r, tx, c, errServer)
		return
	}
	rec := codeRecord{
		ClientID: tx.ClientID, RedirectURI: tx.RedirectURI, RedirectGiven: tx.RedirectGiven,
		Challenge: tx.Challenge, Resource: tx.Resource, Scopes: tx.Scopes,
		Subject: tx.Subject, Roles: tx.Roles, Refresh: c.allows(grantRefresh),
		Expires: s.now().Add(s.codeTTL).UnixNano(),
	}
	b, err := json.Marshal(rec)
	if err == nil {
		err = s.store.Create(r.Context(), hashKey(keyCode, code), b, s.codeTTL)
	}
	if err != nil {
		s.keyFault(r, "store unavailable")
		s.redirectError(w, r, tx, c, errUnavailable)
		return
	}
	v := url.Values{"code": {code}}
	s.redirect(w, tx, c, v)
}

// redirectError sends an error to the client's redirect URI (RFC 6749
// §4.1.2.1), with state and, unless switched off, iss (RFC 9207).
func (s *Server) redirectError(w http.ResponseWriter, r *http.Request, tx *transaction, c *client, e *oauthError) {
	v := url.Values{"error": {e.code}}
	if e.desc != "" {
		v.Set("error_description", e.desc)
	}
	s.redirect(w, tx, c, v)
}

func (s *Server) redirect(w http.ResponseWriter, tx *transaction, c *client, v url.Values) {
	if tx.State != "" {
		v.Set("state", tx.State)
	}
	if s.emitIss {
		v.Set("iss", s.issuer)
	}
	target := withParams(tx.RedirectURI, v)
	if tx.RedirectKind == redirectApp {
		// A browser stalls silently on a redirect to an app's scheme:
		// show a link the user can follow.
		s.writePage(w, http.StatusOK, "app", &pageData{Title: "Almost done", ClientName: c.displayName(), Link: template.URL(target)})
		return
	}
	h := w.Header()
	h.Set("Location", target)
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(http.StatusSeeOther)
}

// userCredential is what the lockout counts for a login: the username, in
// one normal form (trimmed, lower case), so that a guesser cannot spread
// its attempts over spellings of one name. Empty for an empty or
// oversized username, which only the address's count sees.
func userCredential(username string) string {
	username = strings.ToLower(strings.TrimSpace(username))
	if username == "" || len(username) > maxUsernameLen {
		return ""
	}
	return "user:" + username
}
