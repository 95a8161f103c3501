package mcpauth

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzJSONRPCCalls: the body peek of RequireScopes never panics, and finds
// the method of any single message that encoding/json reads the same way.
func FuzzJSONRPCCalls(f *testing.F) {
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"write-data"}}`))
	f.Add([]byte(`[{"method":"tools/call","params":{"name":"a"}},{"method":"resources/read","params":{"uri":"file:///x"}}]`))
	f.Add([]byte(`{"method":"tools/call","params":[1]}`))
	f.Add([]byte(`[[[]]]`))
	f.Add([]byte(`{"METHOD":"tools/call"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		calls := jsonrpcCalls(body)
		var msg struct {
			Method *string `json:"method"`
		}
		var keys map[string]json.RawMessage
		if json.Unmarshal(body, &keys) != nil || json.Unmarshal(body, &msg) != nil || msg.Method == nil {
			return
		}
		for k := range keys {
			if k != "method" && strings.EqualFold(k, "method") {
				return // encoding/json matches it case-insensitively; go-sdk does not
			}
		}
		if len(calls) != 1 || calls[0].method != *msg.Method {
			t.Errorf("jsonrpcCalls(%q) = %v, want method %q", body, calls, *msg.Method)
		}
	})
}
