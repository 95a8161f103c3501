package authserver

import (
	"flag"
	"os"
	"testing"

	"github.com/mcpauth/mcpauth/internal/audittap"
)

// TestMain fails the run if any event of any test held a secret that any
// test presented or the server issued: a client secret, a password, a
// code, a token (internal/audittap).
func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(audittap.Run(m.Run, testing.Verbose()))
}
