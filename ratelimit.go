package mcpauth

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/time/rate"

	"github.com/mcpauth/mcpauth/internal/limiter"
)

// A Limit is a rate limit: Rate requests per second on average, in bursts
// of up to Burst. The zero Limit means no limit.
type Limit struct {
	Rate  float64
	Burst int
}

// A RateDecision is a [RateLimiter]'s answer: whether the request may go
// on, how many more fit now (Remaining), how long a refused one should wait
// (RetryAfter) and how long until the whole burst is there again (Reset).
type RateDecision struct {
	Allowed    bool
	Remaining  int
	RetryAfter time.Duration
	Reset      time.Duration
}

// A RateLimiter decides whether one more request under key fits limit, and
// counts it if it does. The in-process limiter (the default) keeps a
// golang.org/x/time/rate token bucket per key in bounded memory; the Redis
// store in store/redis implements it with GCRA in one script, so that
// replicas share one budget. An error means the limiter could not answer:
// the request is refused with 503.
type RateLimiter interface {
	Allow(ctx context.Context, key string, limit Limit) (RateDecision, error)
}

// defaultRateLimiters is the bound of the in-process limiter.
const defaultRateLimiters = 65536

// localLimiter is the in-process [RateLimiter].
type localLimiter struct {
	m *limiter.Map
}

func newLocalLimiter(capacity int, now func() time.Time) *localLimiter {
	return &localLimiter{m: limiter.New(capacity, now)}
}

func (l *localLimiter) Allow(_ context.Context, key string, limit Limit) (RateDecision, error) {
	return l.allowAt(key, limit, time.Now()), nil
}

// allowAt is Allow at now, for Require, which has read the clock already.
func (l *localLimiter) allowAt(key string, limit Limit, now time.Time) RateDecision {
	lim, burst := rate.Limit(limit.Rate), max(limit.Burst, 1)
	ok, retry, left := l.m.TakeLeftAt(limiter.Key{ID: key}, lim, burst, now)
	d := RateDecision{Allowed: ok, RetryAfter: retry, Remaining: int(left)}
	if limit.Rate > 0 {
		d.Reset = time.Duration((float64(burst) - left) / limit.Rate * float64(time.Second))
	}
	return d
}

// rateLimits applies RequireOptions.RateLimit and SourceRateLimit.
type rateLimits struct {
	backend   RateLimiter
	principal Limit
	source    Limit
	// policy holds the RateLimit-Policy values, principal and source,
	// each a one-element slice shared by every response: a header value is
	// only replaced, never written through, so sharing it saves an
	// allocation per request.
	policy [2][]string
	// values holds recent RateLimit values: see value.
	values [64]atomic.Pointer[headerValue]
}

func newRateLimits(opts *RequireOptions) (*rateLimits, error) {
	if opts.RateLimit == (Limit{}) && opts.SourceRateLimit == (Limit{}) {
		return nil, nil
	}
	for _, l := range []Limit{opts.RateLimit, opts.SourceRateLimit} {
		if l.Rate < 0 || l.Burst < 0 || math.IsNaN(l.Rate) || math.IsInf(l.Rate, 0) || (l != Limit{} && l.Rate == 0) {
			return nil, errors.New("mcpauth: RequireOptions: a rate limit needs a positive Rate and a Burst that is not negative")
		}
	}
	rl := &rateLimits{backend: opts.RateLimiter, principal: opts.RateLimit, source: opts.SourceRateLimit}
	if rl.backend == nil {
		// The local limiter reads the clock Require hands it.
		rl.backend = newLocalLimiter(defaultRateLimiters, time.Now)
	}
	rl.policy[0] = []string{policyHeader("principal", opts.RateLimit)}
	rl.policy[1] = []string{policyHeader("source", opts.SourceRateLimit)}
	return rl, nil
}

// policyHeader is a RateLimit-Policy field value
// (draft-ietf-httpapi-ratelimit-headers-09 §3): the quota q is the burst,
// and the window w the seconds in which it refills.
func policyHeader(name string, l Limit) string {
	if l.Rate <= 0 {
		return ""
	}
	burst := max(l.Burst, 1)
	w := int64(math.Ceil(float64(burst) / l.Rate))
	return `"` + name + `";q=` + strconv.Itoa(burst) + ";w=" + strconv.FormatInt(max(w, 1), 10)
}

// allow counts one request under key against the principal's (source
// false) or the address's limit, writes the RateLimit-Policy and RateLimit
// headers, and returns an error for a request to refuse.
func (rl *rateLimits) allow(w http.ResponseWriter, r *http.Request, key string, source bool, now time.Time) error {
	limit, i, name := rl.principal, 0, `"principal";r=`
	if source {
		limit, i, name = rl.source, 1, `"source";r=`
	}
	if limit.Rate <= 0 {
		return nil
	}
	var err error
	var d RateDecision
	if local, ok := rl.backend.(*localLimiter); ok {
		d = local.allowAt(key, limit, now)
	} else if d, err = rl.backend.Allow(r.Context(), key, limit); err != nil {
		return errRateLimiterDown
	}
	h := w.Header()
	h["Ratelimit-Policy"] = rl.policy[i]
	h["Ratelimit"] = rl.value(i, name, max(d.Remaining, 0), ceilSeconds(d.Reset))
	if !d.Allowed {
		return &refusal{class: &RateLimitError{RetryAfter: d.RetryAfter}, reason: "rate_limited", retryAfter: max(d.RetryAfter, time.Second)}
	}
	return nil
}

// value returns the RateLimit field (draft -09 §4) for limit i: the
// remaining quota r and the seconds t until it is whole again. Most
// requests find their bucket as the last request found it (a caller that
// stays within its limit sees it nearly full), so recent values are kept,
// by (limit, r, t), in a small table that any number of requests read
// without a lock: a hit costs no allocation, a miss one.
func (rl *rateLimits) value(i int, name string, r int, t int64) []string {
	slot := &rl.values[(uint64(r)*0x9e3779b97f4a7c15^uint64(t)<<1^uint64(i))%uint64(len(rl.values))]
	if v := slot.Load(); v != nil && v.limit == i && v.r == r && v.t == t {
		return v.s[:]
	}
	v := &headerValue{limit: i, r: r, t: t}
	b := append(v.buf[:0], name...)
	b = strconv.AppendInt(b, int64(r), 10)
	b = append(b, ";t="...)
	b = strconv.AppendInt(b, t, 10)
	if len(b) <= len(v.buf) {
		// The string shares v's buffer, which nothing writes again.
		v.s[0] = unsafe.String(&v.buf[0], len(b))
	} else {
		v.s[0] = string(b)
	}
	slot.Store(v)
	return v.s[:]
}

// headerValue is a RateLimit field value with room to build it, and what
// it says. Once built it is only read: responses share it, as they share
// the RateLimit-Policy value.
type headerValue struct {
	limit int
	r     int
	t     int64
	s     [1]string
	buf   [48]byte
}

var errRateLimiterDown = &refusal{class: ErrUnavailable, reason: "rate_limiter_unavailable"}

func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// sharedRateLimit applies a guard rule's rate limit through a
// [RateLimiter]: the key names the rule by its index and the caller by its
// user ID.
func sharedRateLimit(ctx context.Context, rl RateLimiter, k kind, rule int, id string, limit rate.Limit, burst int) error {
	d, err := rl.Allow(ctx, "rule|"+strconv.Itoa(rule)+"|"+id, Limit{Rate: float64(limit), Burst: burst})
	if err != nil {
		return &refusal{class: ErrUnavailable, reason: "rate_limiter_unavailable", msg: "mcpauth: rate limiter unavailable"}
	}
	if !d.Allowed {
		return rateLimitError(k, d.RetryAfter)
	}
	return nil
}
