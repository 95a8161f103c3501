package redis

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/mcpauth/mcpauth"
)

// gcra is the generic cell rate algorithm in one script, so that replicas
// share one budget per key without a race: KEYS[1] holds the theoretical
// arrival time (TAT) in microseconds of Redis's own clock, which every
// replica reads alike. ARGV[1] is the emission interval (microseconds per
// request) and ARGV[2] the burst. It returns allowed (0 or 1), the requests
// that still fit now, the microseconds until a refused one would fit, and
// the microseconds until the whole burst is back.
var gcra = goredis.NewScript(`
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then
	tat = now
end
local tolerance = interval * burst
local next_tat = tat + interval
local allow_at = next_tat - tolerance
if now < allow_at then
	return {0, 0, allow_at - now, tat - now}
end
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1)
return {1, math.floor((now - allow_at) / interval), 0, next_tat - now}
`)

// Allow implements [mcpauth.RateLimiter] with GCRA on Redis: one script
// per request, on Redis's clock. Keys are stored as
// "ratelimit:<hash of the key>", so that caller-chosen keys stay short.
func (s *Store) Allow(ctx context.Context, key string, limit mcpauth.Limit) (mcpauth.RateDecision, error) {
	if limit.Rate <= 0 || math.IsInf(limit.Rate, 0) || math.IsNaN(limit.Rate) || limit.Burst < 0 {
		return mcpauth.RateDecision{}, errors.New("mcpauth: redis: rate limit needs a positive Rate")
	}
	burst := max(limit.Burst, 1)
	interval := max(int64(1e6/limit.Rate), 1)
	ctx, cancel, err := s.call(ctx)
	if err != nil {
		return mcpauth.RateDecision{}, err
	}
	defer cancel()
	sum := sha256.Sum256([]byte(key))
	res, err := gcra.Run(ctx, s.client, []string{s.prefix + "ratelimit:" + hex.EncodeToString(sum[:16])}, interval, burst).Int64Slice()
	if err != nil {
		return mcpauth.RateDecision{}, s.fail("ratelimit", err)
	}
	if len(res) != 4 {
		return mcpauth.RateDecision{}, errors.New("mcpauth: redis: ratelimit: bad reply")
	}
	return mcpauth.RateDecision{
		Allowed:    res[0] == 1,
		Remaining:  int(res[1]),
		RetryAfter: time.Duration(res[2]) * time.Microsecond,
		Reset:      time.Duration(res[3]) * time.Microsecond,
	}, nil
}

var _ mcpauth.RateLimiter = (*Store)(nil)
