package header

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
)

// benchToken returns a JWT-shaped string with the sizes of a real token: a
// JOSE header, claims of claimsLen bytes and a signature of sigLen bytes
// (64 for ES256, 256 for RS256 with a 2048-bit key), each base64url-encoded.
func benchToken(alg string, claimsLen, sigLen int) string {
	enc := base64.RawURLEncoding
	claims := `{"iss":"https://idp.example.com","sub":"alice","aud":"https://mcp.example.com/mcp","scope":"tools:read tools:write","roles":["admin","viewer"],"x":"`
	claims += strings.Repeat("y", max(0, claimsLen-len(claims)-2)) + `"}`
	sig := make([]byte, sigLen)
	rand.Read(sig)
	return enc.EncodeToString([]byte(`{"alg":"`+alg+`","typ":"at+jwt","kid":"key-1"}`)) + "." +
		enc.EncodeToString([]byte(claims)) + "." + enc.EncodeToString(sig)
}

var benchTokens = []struct {
	name  string
	token string
}{
	{"ES256", benchToken("ES256", 180, 64)},  // about 380 bytes
	{"RS256", benchToken("RS256", 300, 256)}, // about 800 bytes
	{"api-key", "mcpk_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg012345"},
}

var sinkBool bool

// BenchmarkLooksLikeJWT measures the shape check every bearer request goes
// through, on tokens of real sizes and on an API key (which has no dot).
func BenchmarkLooksLikeJWT(b *testing.B) {
	for _, tt := range benchTokens {
		b.Run(tt.name+"-"+itoa(len(tt.token))+"B", func(b *testing.B) {
			b.SetBytes(int64(len(tt.token)))
			for b.Loop() {
				sinkBool = LooksLikeJWT(tt.token)
			}
		})
	}
}

// BenchmarkBearer measures extracting and checking a bearer token.
func BenchmarkBearer(b *testing.B) {
	for _, tt := range benchTokens {
		h := http.Header{"Authorization": {"Bearer " + tt.token}}
		b.Run(tt.name+"-"+itoa(len(tt.token))+"B", func(b *testing.B) {
			b.SetBytes(int64(len(tt.token)))
			for b.Loop() {
				_, _, sinkBool, _ = Bearer(h)
			}
		})
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}
