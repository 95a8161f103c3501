package redis

import (
	"context"
	"flag"
	"os"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/mcpauth/mcpauth/internal/audittap"
)

// TestMain silences go-redis's own log (reconnection attempts during the
// fault tests) unless the tests run with -v, and fails the run if an event
// held a credential (internal/audittap).
func TestMain(m *testing.M) {
	flag.Parse()
	if !testing.Verbose() {
		goredis.SetLogger(quiet{})
	}
	os.Exit(audittap.Run(m.Run, testing.Verbose()))
}

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}
