// Package bolt is the embedded [mcpauth.Store]: one file on local disk, on
// go.etcd.io/bbolt. Nothing to install or run beside the server; every write
// is an fsync'd transaction, so what a method reported written survives a
// crash, kill -9 or a restart. One process at a time opens the file: use
// store/redis for several replicas.
//
//	st, err := bolt.Open("/var/lib/myserver/mcpauth.db", nil)
//	if err != nil {
//		log.Fatal(err)
//	}
//	defer st.Close()
//
// Each entry is stored with its deadline beside the value and checked on
// every read; a background sweeper deletes expired entries in small
// transactions, so that the file's size follows what is live without one
// long stop-the-world scan.
package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/mcpauth/mcpauth"
)

// Options configure [Open]. The zero value, or nil, is the default for
// every field.
type Options struct {
	// LockTimeout is how long Open waits for the file while another
	// process (or another Store in this one) has it open. Zero (the
	// default) means one second: a second server started on the same
	// file fails at start-up with a clear error instead of hanging.
	LockTimeout time.Duration
	// SweepInterval is how often the sweeper looks for expired entries.
	// Zero (the default) means one minute. Expired entries are never
	// visible in between; they only take disk space.
	SweepInterval time.Duration
}

const (
	defaultLockTimeout   = time.Second
	defaultSweepInterval = time.Minute
	// sweepBatch bounds the entries one sweeping transaction deletes, and
	// sweepPause is the pause between two such transactions, so that the
	// sweeper never holds bbolt's one writer lock for long.
	sweepBatch = 256
	sweepPause = 10 * time.Millisecond
	// listBatch bounds the entries List copies out of one read
	// transaction before it calls fn.
	listBatch = 256
)

// The file holds two buckets: data maps a key to its 8-byte big-endian
// deadline (Unix nanoseconds, 0 for none) followed by the value; expiry
// holds deadline‖key for every entry with a deadline, in deadline order,
// so that the sweeper finds expired entries without reading live ones.
var (
	dataBucket   = []byte("mcpauth.data")
	expiryBucket = []byte("mcpauth.expiry")
)

// Store is a [mcpauth.Store] in one bbolt file. It is safe for concurrent
// use. Close it to stop the sweeper and release the file.
type Store struct {
	db       *bbolt.DB
	path     string
	interval time.Duration
	now      func() time.Time

	stop      chan struct{}
	stopped   chan struct{}
	closeOnce sync.Once
	closeErr  error

	// onSweep, when set by a test, is told how many entries each sweeping
	// transaction deleted.
	onSweep func(n int)
}

var _ mcpauth.Store = (*Store)(nil)

// Open opens the store in the file at path, creating it (mode 0600) if it
// does not exist. It fails if another process has the file open and does
// not let go within Options.LockTimeout.
func Open(path string, opts *Options) (*Store, error) {
	return open(path, opts, time.Now, nil)
}

func open(path string, opts *Options, now func() time.Time, onSweep func(int)) (*Store, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.LockTimeout < 0 || o.SweepInterval < 0 {
		return nil, errors.New("mcpauth: bolt: negative LockTimeout or SweepInterval")
	}
	if o.LockTimeout == 0 {
		o.LockTimeout = defaultLockTimeout
	}
	if o.SweepInterval == 0 {
		o.SweepInterval = defaultSweepInterval
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: o.LockTimeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("mcpauth: bolt: %s is in use by another process (or another Store in this one): not released within %v", path, o.LockTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("mcpauth: bolt: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, name := range [][]byte{dataBucket, expiryBucket} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("mcpauth: bolt: open %s: %w", path, err)
	}
	s := &Store{
		db:       db,
		path:     path,
		interval: o.SweepInterval,
		now:      now,
		stop:     make(chan struct{}),
		stopped:  make(chan struct{}),
		onSweep:  onSweep,
	}
	go s.sweeper()
	return s, nil
}

// Close stops the sweeper, waits for a sweep in progress, and closes the
// file. Methods called after Close return an error.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.stopped
		s.closeErr = s.db.Close()
	})
	return s.closeErr
}

// deadline turns a ttl into an absolute deadline; 0 means none.
func (s *Store) deadline(ttl time.Duration) (int64, error) {
	switch {
	case ttl < 0:
		return 0, errors.New("mcpauth: bolt: negative ttl")
	case ttl == 0:
		return 0, nil
	}
	return s.now().Add(ttl).UnixNano(), nil
}

// tx holds the two buckets of one transaction.
type tx struct {
	data, expiry *bbolt.Bucket
	now          int64
}

// view runs fn in a read transaction, update in a read-write one: each
// after checking ctx and key, since a transaction cannot be cancelled.
func (s *Store) view(ctx context.Context, key string, fn func(t tx) error) error {
	if err := check(ctx, key); err != nil {
		return err
	}
	return s.wrap(s.db.View(func(btx *bbolt.Tx) error { return fn(s.buckets(btx)) }))
}

func (s *Store) update(ctx context.Context, key string, fn func(t tx) error) error {
	if err := check(ctx, key); err != nil {
		return err
	}
	return s.wrap(s.db.Update(func(btx *bbolt.Tx) error { return fn(s.buckets(btx)) }))
}

func check(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if key == "" || len(key) > bbolt.MaxKeySize {
		return fmt.Errorf("mcpauth: bolt: key of %d bytes (1 to %d)", len(key), bbolt.MaxKeySize)
	}
	return nil
}

func (s *Store) buckets(btx *bbolt.Tx) tx {
	return tx{data: btx.Bucket(dataBucket), expiry: btx.Bucket(expiryBucket), now: s.now().UnixNano()}
}

// wrap gives bbolt's own errors the package's prefix; the store's answers
// and the package's own errors pass unchanged.
func (s *Store) wrap(err error) error {
	if err == nil || err == mcpauth.ErrNotFound || err == mcpauth.ErrExists || err == errNotCounter {
		return err
	}
	return fmt.Errorf("mcpauth: bolt: %s: %w", s.path, err)
}

var errNotCounter = errors.New("mcpauth: bolt: Incr of a value that is not a counter")

// live returns key's stored value (deadline prefix removed) if it has one
// that has not expired. The slice belongs to the transaction.
func (t tx) live(key []byte) (value []byte, deadline int64, ok bool) {
	v := t.data.Get(key)
	if len(v) < 8 {
		return nil, 0, false
	}
	deadline = int64(binary.BigEndian.Uint64(v))
	if deadline != 0 && t.now >= deadline {
		return nil, 0, false
	}
	return v[8:], deadline, true
}

// put stores value under key with deadline, replacing what key had.
func (t tx) put(key, value []byte, deadline int64) error {
	if err := t.unindex(key); err != nil {
		return err
	}
	v := make([]byte, 8+len(value))
	binary.BigEndian.PutUint64(v, uint64(deadline))
	copy(v[8:], value)
	if err := t.data.Put(key, v); err != nil {
		return err
	}
	if deadline != 0 {
		return t.expiry.Put(expiryKey(deadline, key), nil)
	}
	return nil
}

// remove deletes key and its expiry entry.
func (t tx) remove(key []byte) error {
	if err := t.unindex(key); err != nil {
		return err
	}
	return t.data.Delete(key)
}

// unindex deletes the expiry entry of key's current value, if it has one.
func (t tx) unindex(key []byte) error {
	v := t.data.Get(key)
	if len(v) < 8 {
		return nil
	}
	if d := int64(binary.BigEndian.Uint64(v)); d != 0 {
		return t.expiry.Delete(expiryKey(d, key))
	}
	return nil
}

func expiryKey(deadline int64, key []byte) []byte {
	k := make([]byte, 8+len(key))
	binary.BigEndian.PutUint64(k, uint64(deadline))
	copy(k[8:], key)
	return k
}

// Get implements [mcpauth.Store].
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	var out []byte
	err := s.view(ctx, key, func(t tx) error {
		v, _, ok := t.live([]byte(key))
		if !ok {
			return mcpauth.ErrNotFound
		}
		out = append(make([]byte, 0, len(v)), v...) // v is valid only in the transaction
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Set implements [mcpauth.Store].
func (s *Store) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	d, err := s.deadline(ttl)
	if err != nil {
		return err
	}
	return s.update(ctx, key, func(t tx) error {
		return t.put([]byte(key), value, d)
	})
}

// Create implements [mcpauth.Store], in one transaction.
func (s *Store) Create(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	d, err := s.deadline(ttl)
	if err != nil {
		return err
	}
	return s.update(ctx, key, func(t tx) error {
		if _, _, ok := t.live([]byte(key)); ok {
			return mcpauth.ErrExists
		}
		return t.put([]byte(key), value, d)
	})
}

// Take implements [mcpauth.Store], in one transaction: bbolt has one
// writer at a time, so of two Takes exactly one finds the value.
func (s *Store) Take(ctx context.Context, key string) ([]byte, error) {
	var out []byte
	err := s.update(ctx, key, func(t tx) error {
		v, _, ok := t.live([]byte(key))
		if !ok {
			return mcpauth.ErrNotFound
		}
		out = append(make([]byte, 0, len(v)), v...)
		return t.remove([]byte(key))
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Delete implements [mcpauth.Store].
func (s *Store) Delete(ctx context.Context, key string) error {
	return s.update(ctx, key, func(t tx) error {
		return t.remove([]byte(key))
	})
}

// Incr implements [mcpauth.Store], in one transaction.
func (s *Store) Incr(ctx context.Context, key string, ttl time.Duration) (int64, error) {
	d, err := s.deadline(ttl)
	if err != nil {
		return 0, err
	}
	var n int64
	err = s.update(ctx, key, func(t tx) error {
		n = 0
		v, old, ok := t.live([]byte(key))
		if ok {
			var err error
			if n, err = strconv.ParseInt(string(v), 10, 64); err != nil {
				return errNotCounter
			}
			d = old
		}
		n++
		return t.put([]byte(key), strconv.AppendInt(nil, n, 10), d)
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// List implements [mcpauth.Store]. It copies up to a few hundred entries at
// a time out of a read transaction and calls fn outside it, so fn may use
// the store (a write inside a bbolt read transaction of the same goroutine
// can deadlock) and a long List holds no transaction open.
func (s *Store) List(ctx context.Context, prefix string, fn func(key string, value []byte) error) error {
	type kv struct {
		k string
		v []byte
	}
	p := []byte(prefix)
	from := p
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var batch []kv
		more := false
		err := s.db.View(func(btx *bbolt.Tx) error {
			t := s.buckets(btx)
			c := t.data.Cursor()
			for k, _ := c.Seek(from); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
				if len(batch) == listBatch {
					more = true
					from = bytes.Clone(k)
					return nil
				}
				if v, _, ok := t.live(k); ok {
					batch = append(batch, kv{string(k), append([]byte{}, v...)})
				}
			}
			return nil
		})
		if err != nil {
			return s.wrap(err)
		}
		for _, e := range batch {
			if err := fn(e.k, e.v); err != nil {
				return err
			}
		}
		if !more {
			return nil
		}
	}
}

// sweeper deletes expired entries every interval until Close.
func (s *Store) sweeper() {
	defer close(s.stopped)
	timer := time.NewTimer(s.interval)
	defer timer.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-timer.C:
		}
		for {
			n, err := s.sweepOnce()
			if err != nil || n < sweepBatch {
				break // nothing more expired (or the file is failing: try next time)
			}
			select {
			case <-s.stop:
				return
			case <-time.After(sweepPause):
			}
		}
		timer.Reset(s.interval)
	}
}

// sweepOnce deletes at most sweepBatch expired entries in one transaction
// and returns how many it deleted.
func (s *Store) sweepOnce() (n int, err error) {
	defer func() {
		if err == nil && s.onSweep != nil {
			s.onSweep(n)
		}
	}()
	// A read first: a write transaction costs an fsync even when it
	// changes nothing.
	due := false
	err = s.db.View(func(btx *bbolt.Tx) error {
		k, _ := btx.Bucket(expiryBucket).Cursor().First()
		due = len(k) >= 8 && int64(binary.BigEndian.Uint64(k)) <= s.now().UnixNano()
		return nil
	})
	if err != nil || !due {
		return 0, err
	}
	err = s.db.Update(func(btx *bbolt.Tx) error {
		t := s.buckets(btx)
		var expired [][]byte
		c := t.expiry.Cursor()
		for k, _ := c.First(); k != nil && len(expired) < sweepBatch; k, _ = c.Next() {
			if len(k) < 8 || int64(binary.BigEndian.Uint64(k)) > t.now {
				break
			}
			expired = append(expired, bytes.Clone(k))
		}
		for _, k := range expired {
			key := k[8:]
			// The entry may have been rewritten with a later deadline
			// whose index entry is elsewhere; delete it only if this
			// index entry is its own.
			if v := t.data.Get(key); len(v) >= 8 && bytes.Equal(v[:8], k[:8]) {
				if err := t.data.Delete(key); err != nil {
					return err
				}
			}
			if err := t.expiry.Delete(k); err != nil {
				return err
			}
		}
		n = len(expired)
		return nil
	})
	return n, err
}
