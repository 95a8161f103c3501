package authserver

import (
	"context"
	"net/http"
)

// Users logs users in. (step 2)
type Users interface {
	Authenticate(ctx context.Context, username, password string) (*User, error)
}

// User is a logged-in user. (step 2)
type User struct {
	Subject string
	Roles   []string
	Scopes  []string
}

type metadataFetcher struct{}

func newMetadataFetcher(*Server, *ClientMetadataOptions) (*metadataFetcher, error) {
	return &metadataFetcher{}, nil
}
func (*metadataFetcher) client(context.Context, string) (*client, error) {
	return nil, errUnknownClient
}

func (s *Server) authorizationCode(http.ResponseWriter, *http.Request, params, *clientAuth) *oauthError {
	return errUnsupportedGrant
}
func (s *Server) refresh(http.ResponseWriter, *http.Request, params, *clientAuth) *oauthError {
	return errUnsupportedGrant
}
func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request)     { http.NotFound(w, r) }
func (s *Server) handleIntrospect(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }
func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request)  { http.NotFound(w, r) }
func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request)      { http.NotFound(w, r) }
func (s *Server) handleConsent(w http.ResponseWriter, r *http.Request)    { http.NotFound(w, r) }
func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request)   { http.NotFound(w, r) }
