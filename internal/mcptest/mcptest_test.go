package mcptest

import (
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestModesSpeakTheirVersion: each mode's client and server agree on the
// protocol version the mode is named for. (The 2026-07-28 mode once used a
// stateful handler, with which go-sdk quietly falls back to 2025-11-25, so no
// test ran under 2026-07-28 at all.)
func TestModesSpeakTheirVersion(t *testing.T) {
	for _, m := range Modes {
		t.Run(m.Name, func(t *testing.T) {
			s := mcp.NewServer(&mcp.Implementation{Name: "mcptest", Version: "1"}, nil)
			srv := Serve(t, m.Handler(s))
			cs, err := Connect(t, m, srv.URL, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := cs.InitializeResult().ProtocolVersion; got != m.ProtocolVersion {
				t.Errorf("negotiated %s, want %s", got, m.ProtocolVersion)
			}
		})
	}
}
