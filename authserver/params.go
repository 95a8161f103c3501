package authserver

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"

	"github.com/mcpauth/mcpauth/internal/audittap"
	"github.com/mcpauth/mcpauth/internal/jose"
)

// params are the parameters of a request body, each present at most once
// (RFC 6749 §3.2). An empty value counts as absent (RFC 6749 §3.1).
type params map[string]string

func (p params) get(k string) string { return p[k] }
func (p params) has(k string) bool   { return p[k] != "" }

var errBodyTooLarge = errors.New("body too large")

// readBody reads at most MaxBodySize bytes of r's body.
func readBody(r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBodySize+1))
	if err != nil {
		return nil, err
	}
	if len(body) > MaxBodySize {
		return nil, errBodyTooLarge
	}
	return body, nil
}

// readParams reads the parameters of a POST body: form-encoded (RFC 6749
// §3.2), or a JSON object of strings, which some clients send. A body
// larger than MaxBodySize, a parameter given twice, a JSON value that is
// not a string, and any other content type are invalid_request. The URL's
// query is ignored: credentials do not belong there.
func readParams(r *http.Request) (params, *oauthError) {
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return nil, errInvalidRequest("The body must be form-encoded or JSON.")
	}
	body, err := readBody(r)
	if errors.Is(err, errBodyTooLarge) {
		return nil, errInvalidRequest("The request body is too large.")
	}
	if err != nil {
		return nil, errInvalidRequest("The request body could not be read.")
	}
	switch ct {
	case "application/x-www-form-urlencoded":
		return parseForm(string(body))
	case "application/json":
		m, err := jose.DecodeObject(body, 2)
		if err != nil {
			return nil, errInvalidRequest("The JSON body is malformed or has a duplicate member.")
		}
		p := make(params, len(m))
		for k, v := range m {
			s, ok := v.(string)
			if !ok {
				return nil, errInvalidRequest("Every member of the JSON body must be a string.")
			}
			if s != "" {
				p[k] = s
			}
		}
		return p, nil
	}
	return nil, errInvalidRequest("The body must be form-encoded or JSON.")
}

// parseForm parses a form-encoded body, refusing a parameter given twice.
func parseForm(body string) (params, *oauthError) {
	v, err := url.ParseQuery(body)
	if err != nil {
		return nil, errInvalidRequest("The form body is malformed.")
	}
	return fromValues(v)
}

func fromValues(v url.Values) (params, *oauthError) {
	p := make(params, len(v))
	for k, vs := range v {
		if len(vs) > 1 {
			return nil, errInvalidRequest("A parameter is given more than once.")
		}
		if vs[0] != "" {
			p[k] = vs[0]
		}
	}
	if audittap.On() {
		tapParams(p)
	}
	return p, nil
}

// tapParams hands the secret parameters of a request to the test tap that
// checks that no event carries one.
func tapParams(p params) {
	for _, k := range []string{"client_secret", "password", "code", "code_verifier", "refresh_token", "token", "csrf"} {
		audittap.Secret(p.get(k))
	}
}
