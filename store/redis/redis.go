// Package redis is the shared [mcpauth.Store]: several replicas of a
// server use one Redis (6.2 or later), and what must happen once happens
// once across all of them. Each method is one Redis command or one short
// Lua script, so it is atomic on the server:
//
//	Get     GET
//	Set     SET key value [PX ttl]
//	Create  SET key value NX [PX ttl]
//	Take    GETDEL
//	Delete  DEL
//	Incr    a script: INCR, and PEXPIRE only if INCR created the key
//	List    SCAN MATCH prefix*, then GET of each key found
//
// Expiry is Redis's own (PX, in whole milliseconds, rounded up). Every call
// is bounded by Options.Timeout: when Redis is down, slow or unreachable a
// method returns an error within it, never [mcpauth.ErrNotFound] and never
// a hang, and the caller fails closed (mcpauth answers 503). The client
// reconnects by itself when Redis is back.
//
//	st, err := redis.Open("rediss://:password@redis.internal:6380/0", nil)
//
// or, with a client configured in code (sentinel, cluster, TLS):
//
//	st, err := redis.New(goredis.NewClient(&goredis.Options{
//		Addr: "redis.internal:6379", ContextTimeoutEnabled: true,
//	}), nil)
package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/mcpauth/mcpauth"
)

// Options configure [New] and [Open]. The zero value, or nil, is the
// default for every field.
type Options struct {
	// Prefix is put before every key, so that one Redis can hold other
	// data, or the state of several servers under different prefixes.
	// Empty (the default) means "mcpauth:". At most 256 bytes.
	Prefix string
	// Timeout bounds each Redis call a method makes. Zero (the default)
	// means two seconds: long enough for a busy Redis across a network,
	// short enough that a request waiting on a dead one fails quickly.
	Timeout time.Duration
}

const (
	defaultPrefix  = "mcpauth:"
	defaultTimeout = 2 * time.Second
	maxPrefix      = 256
	// scanCount is SCAN's COUNT hint, and the most keys List fetches in
	// one round trip.
	scanCount = 256
)

// Store is a [mcpauth.Store] in Redis. It is safe for concurrent use.
type Store struct {
	client  goredis.UniversalClient
	owned   bool // made by Open, closed by Close
	prefix  string
	timeout time.Duration
}

var _ mcpauth.Store = (*Store)(nil)

// New returns a store on client, which stays the caller's to close.
//
// The client must honour a context's deadline, or a call could outlive
// Options.Timeout (waiting for the client's read timeout, or for ever): New
// refuses a *Client, *ClusterClient or *Ring without ContextTimeoutEnabled,
// or with ReadTimeout or WriteTimeout -2 (no socket deadlines at all).
// Another implementation of UniversalClient is taken as it is, and must
// honour the deadline itself.
func New(client goredis.UniversalClient, opts *Options) (*Store, error) {
	if client == nil {
		return nil, errors.New("mcpauth: redis: nil client")
	}
	if !honoursDeadlines(client) {
		return nil, errors.New("mcpauth: redis: the client must have ContextTimeoutEnabled set, and ReadTimeout and WriteTimeout other than -2, so that Options.Timeout bounds every call")
	}
	return newStore(client, opts)
}

// honoursDeadlines tells whether go-redis will stop a call at its
// context's deadline. Each client type keeps its timeouts in its own form:
// a *Client's options are normalized (-1 meaning no socket deadlines), a
// cluster's and a ring's are as given (-2 meaning that).
func honoursDeadlines(client goredis.UniversalClient) bool {
	switch c := client.(type) {
	case *goredis.Client:
		o := c.Options()
		return o.ContextTimeoutEnabled && o.ReadTimeout != -1 && o.WriteTimeout != -1
	case *goredis.ClusterClient:
		o := c.Options()
		return o.ContextTimeoutEnabled && o.ReadTimeout != -2 && o.WriteTimeout != -2
	case *goredis.Ring:
		o := c.Options()
		return o.ContextTimeoutEnabled && o.ReadTimeout != -2 && o.WriteTimeout != -2
	}
	return true
}

func newStore(client goredis.UniversalClient, opts *Options) (*Store, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	switch {
	case o.Timeout < 0:
		return nil, errors.New("mcpauth: redis: negative Timeout")
	case o.Timeout == 0:
		o.Timeout = defaultTimeout
	}
	switch {
	case len(o.Prefix) > maxPrefix:
		return nil, fmt.Errorf("mcpauth: redis: Prefix of %d bytes, more than %d", len(o.Prefix), maxPrefix)
	case o.Prefix == "":
		o.Prefix = defaultPrefix
	}
	return &Store{client: client, prefix: o.Prefix, timeout: o.Timeout}, nil
}

// Open returns a store on a client of its own for the Redis at url, in the
// form go-redis's ParseURL reads: redis://[user:password@]host[:port][/db]
// (or rediss:// for TLS, unix:// for a socket), with query options such as
// dial_timeout or pool_size. It does not connect; the first call does, and
// [Store.Ping] checks at start-up. Close closes the client.
func Open(url string, opts *Options) (*Store, error) {
	o, err := goredis.ParseURL(url)
	if err != nil {
		// go-redis's message quotes parts of the URL, which can hold a
		// password.
		return nil, errors.New("mcpauth: redis: the URL is not one go-redis reads: redis://, rediss:// or unix://, a numeric port and database, known options (the URL is left out of this message, as it may hold a password)")
	}
	o.ContextTimeoutEnabled = true
	s, err := newStore(goredis.NewClient(o), opts)
	if err != nil {
		return nil, err
	}
	s.owned = true
	return s, nil
}

// Close closes the client if Open made it; a client handed to New is left
// to its owner.
func (s *Store) Close() error {
	if !s.owned {
		return nil
	}
	return s.client.Close()
}

// Ping checks that Redis answers, within Options.Timeout: for a start-up
// or readiness check.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel, err := s.call(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	return s.fail("ping", s.client.Ping(ctx).Err())
}

// call bounds one Redis call by the store's timeout.
func (s *Store) call(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	return ctx, cancel, nil
}

// fail maps redis.Nil to ErrNotFound and gives any other error the
// package's prefix. Redis's errors name neither keys nor values.
func (s *Store) fail(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, goredis.Nil):
		return mcpauth.ErrNotFound
	}
	return fmt.Errorf("mcpauth: redis: %s: %w", op, err)
}

// px is a ttl in whole milliseconds, rounded up, for SET PX and PEXPIRE,
// which take nothing finer.
func px(ttl time.Duration) (time.Duration, error) {
	if ttl < 0 {
		return 0, errors.New("mcpauth: redis: negative ttl")
	}
	return (ttl + time.Millisecond - 1).Truncate(time.Millisecond), nil
}

// Get implements [mcpauth.Store].
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	ctx, cancel, err := s.call(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	v, err := s.client.Get(ctx, s.prefix+key).Bytes()
	if err != nil {
		return nil, s.fail("get", err)
	}
	return v, nil
}

// Set implements [mcpauth.Store].
func (s *Store) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	ttl, err := px(ttl)
	if err != nil {
		return err
	}
	ctx, cancel, err := s.call(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	return s.fail("set", s.client.Set(ctx, s.prefix+key, value, ttl).Err())
}

// Create implements [mcpauth.Store]: SET NX, one command.
func (s *Store) Create(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	ttl, err := px(ttl)
	if err != nil {
		return err
	}
	ctx, cancel, err := s.call(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	ok, err := s.client.SetNX(ctx, s.prefix+key, value, ttl).Result()
	switch {
	case err != nil:
		return s.fail("create", err)
	case !ok:
		return mcpauth.ErrExists
	}
	return nil
}

// Take implements [mcpauth.Store]: GETDEL, one command, so that of two
// replicas taking one key exactly one gets it.
func (s *Store) Take(ctx context.Context, key string) ([]byte, error) {
	ctx, cancel, err := s.call(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	v, err := s.client.GetDel(ctx, s.prefix+key).Bytes()
	if err != nil {
		return nil, s.fail("take", err)
	}
	return v, nil
}

// Delete implements [mcpauth.Store].
func (s *Store) Delete(ctx context.Context, key string) error {
	ctx, cancel, err := s.call(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	return s.fail("delete", s.client.Del(ctx, s.prefix+key).Err())
}

// incr adds one and sets the ttl (ARGV[1], milliseconds; 0 for none) only
// on the key it creates, atomically: a Lua script runs alone on the server.
var incr = goredis.NewScript(`
local fresh = redis.call('EXISTS', KEYS[1]) == 0
local n = redis.call('INCR', KEYS[1])
if fresh and ARGV[1] ~= '0' then
	redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return n
`)

var errNotCounter = errors.New("mcpauth: redis: Incr of a value that is not a counter")

// Incr implements [mcpauth.Store], as one Lua script.
func (s *Store) Incr(ctx context.Context, key string, ttl time.Duration) (int64, error) {
	ttl, err := px(ttl)
	if err != nil {
		return 0, err
	}
	ctx, cancel, err := s.call(ctx)
	if err != nil {
		return 0, err
	}
	defer cancel()
	n, err := incr.Run(ctx, s.client, []string{s.prefix + key}, ttl.Milliseconds()).Int64()
	if err != nil {
		if strings.Contains(err.Error(), "not an integer") {
			return 0, errNotCounter
		}
		return 0, s.fail("incr", err)
	}
	return n, nil
}

// List implements [mcpauth.Store]. It walks the keyspace with SCAN (on
// every primary of a cluster or shard of a ring) a few hundred keys at a
// time, GETs each batch in one round trip, and calls fn outside any Redis
// call, so fn may use the store. A key SCAN returns twice is listed once;
// one created or deleted while List runs may or may not be listed. Each
// round trip is bounded by Options.Timeout, the whole List by ctx.
func (s *Store) List(ctx context.Context, prefix string, fn func(key string, value []byte) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	match := escapeGlob(s.prefix+prefix) + "*"
	seen := make(map[string]bool)
	var stop error // fn's error, which ends the List
	scan := func(ctx context.Context, node goredis.UniversalClient) error {
		var cursor uint64
		for {
			keys, next, err := s.scan(ctx, node, cursor, match)
			if err != nil {
				return err
			}
			values, err := s.getAll(ctx, keys)
			if err != nil {
				return err
			}
			for i, k := range keys {
				if values[i] == nil || seen[k] {
					continue // gone since SCAN saw it, or seen before
				}
				seen[k] = true
				if err := fn(strings.TrimPrefix(k, s.prefix), values[i]); err != nil {
					stop = err
					return err
				}
			}
			if cursor = next; cursor == 0 {
				return nil
			}
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}

	var nodes func(context.Context, func(context.Context, *goredis.Client) error) error
	switch c := s.client.(type) {
	case *goredis.ClusterClient:
		nodes = c.ForEachMaster
	case *goredis.Ring:
		nodes = c.ForEachShard
	default:
		return scan(ctx, s.client)
	}
	// go-redis visits the nodes concurrently; fn is called from one at a
	// time, and not at all once it has failed.
	var mu sync.Mutex
	err := nodes(ctx, func(ctx context.Context, node *goredis.Client) error {
		mu.Lock()
		defer mu.Unlock()
		if stop != nil {
			return stop
		}
		return scan(ctx, node)
	})
	if stop != nil {
		return stop
	}
	return err
}

func (s *Store) scan(ctx context.Context, node goredis.UniversalClient, cursor uint64, match string) ([]string, uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	keys, next, err := node.Scan(ctx, cursor, match, scanCount).Result()
	if err != nil {
		return nil, 0, s.fail("list", err)
	}
	return keys, next, nil
}

// getAll GETs keys in one pipelined round trip (which go-redis splits by
// slot on a cluster); a key that is gone has a nil value.
func (s *Store) getAll(ctx context.Context, keys []string) ([][]byte, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	cmds := make([]*goredis.StringCmd, len(keys))
	_, err := s.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.Get(ctx, k)
		}
		return nil
	})
	if err != nil && !errors.Is(err, goredis.Nil) {
		return nil, s.fail("list", err)
	}
	values := make([][]byte, len(keys))
	for i, c := range cmds {
		v, err := c.Bytes()
		switch {
		case errors.Is(err, goredis.Nil):
		case err != nil:
			return nil, s.fail("list", err)
		case v == nil:
			values[i] = []byte{}
		default:
			values[i] = v
		}
	}
	return values, nil
}

// escapeGlob quotes the characters that SCAN MATCH reads as a pattern, so
// that a prefix matches only itself.
func escapeGlob(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', ']', '\\', '^', '-':
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
