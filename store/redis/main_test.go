package redis

import (
	"context"
	"flag"
	"os"
	"testing"

	goredis "github.com/redis/go-redis/v9"
)

// TestMain silences go-redis's own log (reconnection attempts during the
// fault tests) unless the tests run with -v.
func TestMain(m *testing.M) {
	flag.Parse()
	if !testing.Verbose() {
		goredis.SetLogger(quiet{})
	}
	os.Exit(m.Run())
}

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}
