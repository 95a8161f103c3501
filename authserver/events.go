package authserver

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/mcpauth/mcpauth"
	"github.com/mcpauth/mcpauth/internal/audittap"
)

// The kinds of [mcpauth.Event] the authorization server reports, besides
// mcpauth.EventKeySource for a store or signing key that failed. Each event
// carries the client and, when known, the subject; KeyID is the access
// token's jti where one was issued or revoked. No event holds a code, a
// token, a secret or a password.
const (
	// EventTokenIssued is a token response: Outcome success, Detail the
	// grant type; or a refused token request: Outcome failure, Reason the
	// RFC 6749 error code.
	EventTokenIssued mcpauth.EventKind = "token_issued"
	// EventTokenRefreshed is a refresh token redeemed (and rotated).
	EventTokenRefreshed mcpauth.EventKind = "token_refreshed"
	// EventTokenRevoked is a token revoked at the revocation endpoint, or a
	// token family revoked because of reuse.
	EventTokenRevoked mcpauth.EventKind = "token_revoked"
	// EventReuseDetected is an authorization code or a rotated refresh token
	// presented again: Outcome failure, Reason "code_reuse" or
	// "refresh_token_reuse". The tokens issued from it are revoked.
	EventReuseDetected mcpauth.EventKind = "token_reuse_detected"
	// EventClientRegistered is a dynamic client registration: Outcome
	// success, or failure with the RFC 7591 error code as Reason.
	EventClientRegistered mcpauth.EventKind = "client_registered"
	// EventClientMetadata is a client ID metadata document that could not
	// be used: Outcome failure, Reason why ("fetch", "document", …).
	EventClientMetadata mcpauth.EventKind = "client_metadata"
	// EventAuthorizationRequest is an authorization request refused before
	// the user saw anything (unknown client, redirect URI not registered,
	// bad parameters): Outcome failure.
	EventAuthorizationRequest mcpauth.EventKind = "authorization_request"
	// EventLogin is a user's login at the authorization endpoint: Outcome
	// success, or failure with Reason "login_failed".
	EventLogin mcpauth.EventKind = "login"
	// EventConsent is a user's decision: Outcome success (approved, Detail
	// "remembered" when a remembered consent decided) or denied.
	EventConsent mcpauth.EventKind = "consent"
	// EventIntrospection is a token introspection: Outcome success, Detail
	// "active" or "inactive".
	EventIntrospection mcpauth.EventKind = "introspection"
)

// record hands e to the server's sink, with the request's remote address
// and request id, its caller-chosen values bounded.
func (s *Server) record(r *http.Request, e mcpauth.Event) {
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	if e.Method == "" {
		e.Method = mcpauth.MethodOAuth
	}
	ctx := context.Background()
	if r != nil {
		ctx = r.Context()
		e.RemoteAddr = r.RemoteAddr
		if ids := r.Header["X-Request-Id"]; len(ids) == 1 {
			e.RequestID = ids[0]
		}
	}
	e = e.Bounded()
	if audittap.On() {
		t := e
		t.Time = time.Time{}
		audittap.Event(fmt.Sprintf("%+v", t))
	}
	s.events.Record(ctx, e)
}
