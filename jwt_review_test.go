package mcpauth

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestJWTReviewAmbiguousJSON sends validly signed tokens whose header or
// claims two JSON parsers could read differently. Each must be refused as
// malformed; the control rows, which differ only in not being ambiguous,
// must pass, so that the refusals are the ambiguity's.
func TestJWTReviewAmbiguousJSON(t *testing.T) {
	k := testKeys()
	now := time.Now().Truncate(time.Second)
	v := testVerifier(t, now, "http://127.0.0.1:1/jwks", nil)
	hs := func(hdr, claims string) string { return signToken(t, hdr, claims, "HS256", k.secret) }
	base := fmt.Sprintf(`"iss":%q,"sub":"alice","aud":%q,"exp":%d`, issHMAC, testAudience, now.Add(time.Hour).Unix())
	tests := []struct {
		name  string
		token string
		class error // nil: accepted
	}{
		{"nested duplicate member", hs(`{"alg":"HS256"}`, `{`+base+`,"realm_access":{"roles":["user"],"roles":["admin"]}}`), ErrTokenMalformed},
		{"nested duplicate member, escaped", hs(`{"alg":"HS256"}`, `{`+base+`,"realm_access":{"roles":["user"],"r\u006fles":["admin"]}}`), ErrTokenMalformed},
		{"duplicate member in an object in an array", hs(`{"alg":"HS256"}`, `{`+base+`,"x":[1,{"a":1,"b":[],"a":2}]}`), ErrTokenMalformed},
		{"duplicate member deep down", hs(`{"alg":"HS256"}`, `{`+base+`,"a":{"b":{"c":[{"d":{"e":1,"e":2}}]}}}`), ErrTokenMalformed},
		{"nested duplicate header member", hs(`{"alg":"HS256","x":{"a":1,"a":2}}`, `{`+base+`}`), ErrTokenMalformed},
		{"invalid UTF-8 in a claim", hs(`{"alg":"HS256"}`, `{`+base+`,"name":"alice`+"\xff"+`"}`), ErrTokenMalformed},
		{"invalid UTF-8 in sub", hs(`{"alg":"HS256"}`, fmt.Sprintf(`{"iss":%q,"sub":"alice`+"\xfe"+`","aud":%q,"exp":%d}`, issHMAC, testAudience, now.Add(time.Hour).Unix())), ErrTokenMalformed},
		{"invalid UTF-8 in a member name", hs(`{"alg":"HS256"}`, `{`+base+`,"role`+"\xc0"+`":"admin"}`), ErrTokenMalformed},
		{"invalid UTF-8 in the header", hs(`{"alg":"HS256","x":"`+"\xed\xa0\x80"+`"}`, `{`+base+`}`), ErrTokenMalformed},
		{"control: UTF-8 and escapes", hs(`{"alg":"HS256"}`, `{`+base+`,"name":"Zoë \u00eb \ud83d\ude00 😀"}`), nil},
		{"control: one name in several objects", hs(`{"alg":"HS256","x":{"alg":1}}`, `{`+base+`,"roles":["a"],"realm_access":{"roles":["b"],"x":{"roles":[]}},"l":[{"a":1},{"a":2},[{"a":3}],"a,\"a\":{"]}`), nil},
		{"control: empty objects and arrays", hs(`{"alg":"HS256"}`, `{`+base+`,"a":{},"b":[],"c":[{},[],{"d":{}}]}`), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), tt.token)
			switch {
			case tt.class == nil && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.class != nil && !errors.Is(err, tt.class):
				t.Fatalf("Verify = %v, want %v", err, tt.class)
			}
		})
	}
}
