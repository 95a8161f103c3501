package authserver

import (
	"context"
	"net/http"
)

type metadataFetcher struct{}

func newMetadataFetcher(*Server, *ClientMetadataOptions) (*metadataFetcher, error) {
	return &metadataFetcher{}, nil
}
func (*metadataFetcher) client(context.Context, string) (*client, error) {
	return nil, errUnknownClient
}

func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }
