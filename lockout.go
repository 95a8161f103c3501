package mcpauth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"hash/maphash"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The default thresholds of a [Lockout], as [LockoutOptions] documents.
const (
	defaultSourceFailures     = 20
	defaultCredentialFailures = 5
)

// LockoutOptions configures a [Lockout]. The zero value is the strict
// setting: 20 failures from one source address, or 5 for one credential
// from one address, within 15 minutes lock it out for one minute, doubling
// with each repeat up to an hour.
type LockoutOptions struct {
	// SourceFailures is how many failed attempts from one source address
	// within Window lock the address out. Zero (the default) means 20; a
	// negative value never locks an address out.
	SourceFailures int
	// CredentialFailures is how many failed attempts for one credential
	// identifier (an OAuth client id, a login form's username, a
	// credential's public key ID) from one source address within Window
	// lock that credential out at that address. Zero (the default) means
	// 5; a negative value turns it off.
	CredentialFailures int
	// LockCredential counts a credential's failures from every address
	// together and locks it out everywhere: the classic account lockout.
	// Anyone who knows the identifier (a username, a client id) can then
	// lock its holder out, so it is off by default.
	LockCredential bool
	// Window is how long failed attempts are counted: a count starts at
	// the first failure and is forgotten Window later. Zero (the default)
	// means 15 minutes.
	Window time.Duration
	// Duration is how long the first lockout of an address or credential
	// lasts; each further lockout within a day of the last one's end lasts
	// twice as long as the one before, up to MaxDuration. Zero (the
	// default) means one minute, and a zero MaxDuration one hour.
	Duration    time.Duration
	MaxDuration time.Duration
	// MaxEntries bounds the addresses and credentials counted in memory.
	// When it is reached, an entry that is not locked out is dropped to
	// make room (the one with the fewest failures of a few), never a
	// locked-out one, so a flood of addresses cannot end a lockout early;
	// when every entry is locked out, new failures go uncounted until one
	// expires. Zero (the default) means 100,000 entries, some 20 MB at most.
	MaxEntries int

	// Store shares the counts and lockouts with the other replicas that
	// use the same store. Failures are counted in memory and written at
	// most once per SyncInterval for each entry that changed (at most 1,000
	// entries per interval); lockouts are written when they start, and
	// every replica reads the others' once per interval. So a lockout
	// reaches every replica within about SyncInterval, and no request waits
	// on the store. Nil (the default) keeps the state in this process.
	Store Store
	// SyncInterval is how often the state is shared through Store. Zero
	// (the default) means two seconds.
	SyncInterval time.Duration

	// TrustedProxies are the addresses of reverse proxies whose
	// X-Forwarded-For (or, without one, Forwarded) header names the
	// client: the source address of a request from one of them is the
	// header's last address that is not itself a trusted proxy. A request
	// from any other address is counted by its own address, whatever
	// headers it sends. Nil (the default) trusts no proxy.
	TrustedProxies []netip.Prefix

	// Events receives the lockout started and ended events; nil (the
	// default) means [LogEvents] on Logger. [Require] sets both to its own
	// when it makes its default Lockout.
	Events EventSink
	Logger *slog.Logger
}

// Lockout refuses the addresses and credentials that failed too often,
// with 429 and Retry-After (see [LockoutOptions]). [Require] uses one by
// default and counts the failed authentications it sees; the authorization
// server counts failed client authentications and logins. A Lockout may
// be shared by several of them, and is safe for concurrent use.
//
// An address is the request's remote address (or its forwarded address
// from a trusted proxy), IPv4-mapped IPv6 addresses as IPv4, and IPv6
// addresses grouped by their /64 prefix, the smallest block a host is
// usually given. Only failures that could be guesses count: an unknown,
// malformed or forged credential, not one that expired or was revoked.
// A locked-out address is refused before its credential is checked, a
// correct one included, so that lockout slows guessing.
//
// Each lockout is reported once, when it starts and when it ends, as an
// [EventLockout]; the attempts refused meanwhile are not reported one by
// one.
type Lockout struct {
	opts      LockoutOptions
	events    EventSink
	now       func() time.Time
	seed      maphash.Seed
	capacity  int64
	size      atomic.Int64 // entries held, plus insertions under way
	locked    atomic.Int64 // entries locked out, map-wide: 0 spares lookups
	credLocks atomic.Int64 // of which credentials
	replica   string
	shards    [lockShards]lockShard
	stop      chan struct{}
	closeOnce sync.Once
	syncMu    sync.Mutex // serialises syncs
}

const (
	lockShards = 32
	// lockMemory is how long after a lockout ends a new one grows from it.
	lockMemory = 24 * time.Hour
	// maxSyncWrites bounds the counts one sync writes to the store.
	maxSyncWrites = 1000
	// evictSample is how many unlocked entries an eviction compares.
	evictSample = 8
	// maxLockKeyLen bounds a credential identifier as counted.
	maxLockKeyLen = 256
)

type lockShard struct {
	mu      sync.Mutex
	entries map[string]*lockEntry
	locked  int // entries whose lockout has not ended
	_       [40]byte
}

type lockEntry struct {
	failures    int   // within the window, counted here
	remote      int   // within the window, counted by other replicas
	windowStart int64 // ns
	until       int64 // locked out until, ns; 0 when not locked
	level       int   // lockouts so far, for growth
	forget      int64 // when level is forgotten, ns
	started     bool  // this replica started the lockout: it reports its end
	dirty       bool  // failures changed since the last sync
	publish     bool  // a lockout to write at the next sync
	subject     lockSubject
}

// lockSubject says what an entry counts, for its events.
type lockSubject struct {
	source     string
	credential string
}

// NewLockout returns a lockout for opts (nil means the defaults). It
// returns an error for a negative duration or capacity. With a Store, it
// starts a goroutine that shares the state; Close stops it.
func NewLockout(opts *LockoutOptions) (*Lockout, error) {
	return newLockout(opts, nil)
}

func newLockout(opts *LockoutOptions, now func() time.Time) (*Lockout, error) {
	l := &Lockout{seed: maphash.MakeSeed(), now: now}
	if opts != nil {
		l.opts = *opts
		l.opts.TrustedProxies = append([]netip.Prefix(nil), opts.TrustedProxies...)
	}
	o := &l.opts
	if o.Window < 0 || o.Duration < 0 || o.MaxDuration < 0 || o.SyncInterval < 0 || o.MaxEntries < 0 {
		return nil, errors.New("mcpauth: LockoutOptions: negative duration or MaxEntries")
	}
	if o.SourceFailures == 0 {
		o.SourceFailures = defaultSourceFailures
	}
	if o.CredentialFailures == 0 {
		o.CredentialFailures = defaultCredentialFailures
	}
	if o.Window == 0 {
		o.Window = 15 * time.Minute
	}
	if o.Duration == 0 {
		o.Duration = time.Minute
	}
	if o.MaxDuration == 0 {
		o.MaxDuration = time.Hour
	}
	if o.MaxDuration < o.Duration {
		return nil, errors.New("mcpauth: LockoutOptions: MaxDuration is shorter than Duration")
	}
	if o.MaxEntries == 0 {
		o.MaxEntries = 100_000
	}
	if o.SyncInterval == 0 {
		o.SyncInterval = 2 * time.Second
	}
	for i, p := range o.TrustedProxies {
		if !p.IsValid() {
			return nil, errors.New("mcpauth: LockoutOptions: invalid TrustedProxies prefix")
		}
		o.TrustedProxies[i] = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-unmapBits(p.Addr())).Masked()
	}
	l.capacity = int64(o.MaxEntries)
	l.events = sinkFor(o.Events, o.Logger)
	if l.now == nil {
		l.now = time.Now
	}
	for i := range l.shards {
		l.shards[i].entries = make(map[string]*lockEntry)
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	l.replica = hex.EncodeToString(id[:])
	if o.Store != nil {
		l.stop = make(chan struct{})
		go l.syncLoop()
	}
	return l, nil
}

// unmapBits is how many of a prefix's bits an IPv4-mapped address's
// unmapping removes.
func unmapBits(a netip.Addr) int {
	if a.Is4In6() {
		return 96
	}
	return 0
}

// Close stops sharing the state through the store. The Lockout keeps
// counting in memory.
func (l *Lockout) Close() error {
	if l != nil && l.stop != nil {
		l.closeOnce.Do(func() { close(l.stop) })
	}
	return nil
}

// Check returns nil if r's source address, and the credential (when not
// empty) from it, may try to authenticate; otherwise an error wrapping a
// [*RateLimitError] that says when to retry. credential is a public
// identifier (a client id, a username in its normal form), never a secret.
func (l *Lockout) Check(r *http.Request, credential string) error {
	return l.check(l.Source(r), credential)
}

// Fail records a failed attempt of r's source address with the credential
// (which may be empty), and starts a lockout when one is due.
func (l *Lockout) Fail(r *http.Request, credential string) {
	l.fail(r.Context(), l.Source(r), credential, requestID(r))
}

// active reports whether anything is locked out: while nothing is, a
// check costs one atomic load.
func (l *Lockout) active() bool { return l.locked.Load() > 0 }

// lockedAdd counts n more (or fewer) locked entries of sh, e among them.
// Its lock is held.
func (l *Lockout) lockedAdd(sh *lockShard, e *lockEntry, n int) {
	sh.locked += n
	l.locked.Add(int64(n))
	if e.subject.credential != "" {
		l.credLocks.Add(int64(n))
	}
}

// check is Check on a source already found.
func (l *Lockout) check(source, credential string) error {
	if !l.active() {
		return nil
	}
	now := l.now().UnixNano()
	if l.opts.SourceFailures > 0 {
		if d := l.lockedFor(sourceKey(source), now); d > 0 {
			return lockedOut(d)
		}
	}
	if credential != "" && l.opts.CredentialFailures > 0 && l.credLocks.Load() > 0 {
		if d := l.lockedFor(l.credentialKey(source, credential), now); d > 0 {
			return lockedOut(d)
		}
	}
	return nil
}

func lockedOut(d time.Duration) error {
	return &refusal{class: &RateLimitError{RetryAfter: d}, reason: "locked_out", retryAfter: d}
}

func sourceKey(source string) string { return "s|" + source }

func (l *Lockout) credentialKey(source, credential string) string {
	if len(credential) > maxLockKeyLen {
		credential = credential[:maxLockKeyLen]
	}
	if l.opts.LockCredential {
		return "c|" + credential
	}
	return "p|" + source + "|" + credential
}

func (l *Lockout) shard(key string) *lockShard {
	return &l.shards[maphash.String(l.seed, key)%lockShards]
}

// checkSource is check(sourceOf(a), "") without forming the source's
// string: the key is built on the stack, and a map index by string(bytes)
// copies nothing, so the check a request pays while some source anywhere
// is locked out allocates nothing.
func (l *Lockout) checkSource(a netip.Addr) error {
	if !l.active() || l.opts.SourceFailures <= 0 {
		return nil
	}
	var buf [72]byte
	key := appendSource(append(buf[:0], "s|"...), a)
	sh := &l.shards[maphash.Bytes(l.seed, key)%lockShards]
	sh.mu.Lock()
	e := sh.entries[string(key)]
	if e == nil || e.until == 0 {
		sh.mu.Unlock()
		return nil
	}
	sh.mu.Unlock()
	// Locked, or a lockout to end: the rare case takes the general path.
	if d := l.lockedFor(string(key), l.now().UnixNano()); d > 0 {
		return lockedOut(d)
	}
	return nil
}

// lockedFor returns how long key stays locked out at now, or 0.
func (l *Lockout) lockedFor(key string, now int64) time.Duration {
	sh := l.shard(key)
	sh.mu.Lock()
	e := sh.entries[key]
	if e == nil || e.until == 0 {
		sh.mu.Unlock()
		return 0
	}
	if e.until > now {
		sh.mu.Unlock()
		return time.Duration(e.until - now)
	}
	report, sub := l.ended(sh, e)
	sh.mu.Unlock()
	if report {
		l.report(context.Background(), sub, OutcomeSuccess, "ended", 0, "")
	}
	return 0
}

// endKey ends key's lockout if it is over: the timer of a lockout this
// replica started calls it, so that its end is reported even if no one
// comes back.
func (l *Lockout) endKey(key string) {
	l.lockedFor(key, l.now().UnixNano())
}

func (l *Lockout) fail(ctx context.Context, source, credential, reqID string) {
	now := l.now().UnixNano()
	if l.opts.SourceFailures > 0 {
		l.count(ctx, sourceKey(source), lockSubject{source: source}, l.opts.SourceFailures, now, reqID)
	}
	if credential != "" && l.opts.CredentialFailures > 0 {
		sub := lockSubject{source: source, credential: credential}
		if l.opts.LockCredential {
			sub.source = ""
		}
		l.count(ctx, l.credentialKey(source, credential), sub, l.opts.CredentialFailures, now, reqID)
	}
}

// count adds a failure to key's entry and locks it out at threshold.
func (l *Lockout) count(ctx context.Context, key string, sub lockSubject, threshold int, now int64, reqID string) {
	sh := l.shard(key)
	sh.mu.Lock()
	e := sh.entries[key]
	if e == nil {
		if l.size.Add(1) > l.capacity && !l.evict(sh) {
			l.size.Add(-1)
			sh.mu.Unlock()
			return // every entry is locked out: nothing may go
		}
		e = &lockEntry{subject: sub}
		sh.entries[key] = e
	}
	if e.until > now {
		sh.mu.Unlock()
		return // refused attempts of a lockout are not counted again
	}
	var endReport bool
	if e.until != 0 {
		endReport, _ = l.ended(sh, e)
	}
	if now-e.windowStart >= int64(l.opts.Window) {
		e.failures, e.remote, e.windowStart = 0, 0, now
	}
	e.failures++
	e.dirty = true
	var started time.Duration
	if e.failures+e.remote >= threshold {
		started = l.lock(sh, e, now)
	}
	sh.mu.Unlock()
	if endReport {
		l.report(ctx, sub, OutcomeSuccess, "ended", 0, reqID)
	}
	if started > 0 {
		l.report(ctx, sub, OutcomeDenied, "started", started, reqID)
		time.AfterFunc(started, func() { l.endKey(key) })
	}
}

// lock starts a lockout of e at now, and returns its duration. The
// shard's lock is held.
func (l *Lockout) lock(sh *lockShard, e *lockEntry, now int64) time.Duration {
	if e.forget <= now {
		e.level = 0
	}
	d := l.opts.Duration
	for i := 0; i < e.level && d < l.opts.MaxDuration; i++ {
		d *= 2
	}
	d = min(d, l.opts.MaxDuration)
	e.level++
	e.until = now + int64(d)
	e.forget = e.until + int64(lockMemory)
	e.failures, e.remote, e.windowStart = 0, 0, now
	e.started, e.publish = true, true
	l.lockedAdd(sh, e, 1)
	return d
}

// ended closes e's lockout, which is over, and reports whether this
// replica started it, so that its end is to be reported (after the shard's
// lock, which is held, is released).
func (l *Lockout) ended(sh *lockShard, e *lockEntry) (bool, lockSubject) {
	e.until = 0
	l.lockedAdd(sh, e, -1)
	started := e.started
	e.started = false
	return started, e.subject
}

// evict drops an unlocked entry of sh, or of another shard, to make room.
// sh's lock is held; another shard's is only tried.
func (l *Lockout) evict(sh *lockShard) bool {
	if l.evictFrom(sh, l.now().UnixNano()) {
		l.size.Add(-1)
		return true
	}
	for i := range l.shards {
		o := &l.shards[i]
		if o == sh || !o.mu.TryLock() {
			continue
		}
		ok := l.evictFrom(o, l.now().UnixNano())
		o.mu.Unlock()
		if ok {
			l.size.Add(-1)
			return true
		}
	}
	return false
}

// evictFrom drops, of a few entries of sh that are not locked out, the one
// with the fewest failures and least growth. The lock of sh is held.
func (l *Lockout) evictFrom(sh *lockShard, now int64) bool {
	if len(sh.entries)-sh.locked <= 0 {
		// Every entry is locked, unless some lockouts are over.
		l.sweepEnded(sh, now)
		if len(sh.entries)-sh.locked <= 0 {
			return false
		}
	}
	var victim string
	var best *lockEntry
	seen := 0
	for k, e := range sh.entries {
		if e.until != 0 || e.publish {
			continue
		}
		if best == nil || e.level < best.level || (e.level == best.level && e.failures+e.remote < best.failures+best.remote) {
			victim, best = k, e
		}
		if seen++; seen == evictSample {
			break
		}
	}
	if best == nil {
		return false
	}
	delete(sh.entries, victim)
	return true
}

// sweepEnded marks the lockouts of sh that are over as ended, without
// their events (the sync reports them). The lock of sh is held.
func (l *Lockout) sweepEnded(sh *lockShard, now int64) {
	for _, e := range sh.entries {
		if e.until != 0 && e.until <= now && !e.started {
			e.until = 0
			l.lockedAdd(sh, e, -1)
		}
	}
}

// report emits a lockout event.
func (l *Lockout) report(ctx context.Context, sub lockSubject, outcome Outcome, detail string, d time.Duration, reqID string) {
	e := Event{Kind: EventLockout, Outcome: outcome, Reason: "locked_out", RemoteAddr: sub.source, Subject: sub.credential, Detail: detail, RequestID: reqID}
	if outcome == OutcomeSuccess {
		e.Reason = ""
	} else {
		e.Detail += ":" + strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	emit(ctx, l.events, e)
}

// Source returns the source address of r as the lockout counts it: see
// [Lockout]. A remote address that is not an IP address is used as it is.
func (l *Lockout) Source(r *http.Request) string {
	a, ok := l.sourceAddr(r)
	if !ok {
		return boundValue(r.RemoteAddr)
	}
	return sourceOf(a)
}

// sourceAddr is the address Source names, when the remote address is one.
func (l *Lockout) sourceAddr(r *http.Request) (netip.Addr, bool) {
	a, ok := parseAddr(r.RemoteAddr)
	if !ok {
		return a, false
	}
	if l != nil && len(l.opts.TrustedProxies) > 0 && l.trusted(a) {
		if f, ok := l.forwarded(r.Header); ok {
			a = f
		}
	}
	return a, true
}

func (l *Lockout) trusted(a netip.Addr) bool {
	for _, p := range l.opts.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// forwarded returns the client address a trusted proxy reports: the last
// address of X-Forwarded-For (or of Forwarded's for= parameters) that is
// not a trusted proxy. A header that does not parse names no one.
func (l *Lockout) forwarded(h http.Header) (netip.Addr, bool) {
	var addrs []string
	if xff := h.Values("X-Forwarded-For"); len(xff) > 0 {
		for _, v := range xff {
			for part := range strings.SplitSeq(v, ",") {
				addrs = append(addrs, strings.TrimSpace(part))
			}
		}
	} else {
		for _, v := range h.Values("Forwarded") {
			for elem := range strings.SplitSeq(v, ",") {
				for pair := range strings.SplitSeq(elem, ";") {
					k, val, ok := strings.Cut(strings.TrimSpace(pair), "=")
					if ok && strings.EqualFold(k, "for") {
						addrs = append(addrs, strings.Trim(val, `"`))
					}
				}
			}
		}
	}
	if len(addrs) > 64 {
		addrs = addrs[len(addrs)-64:]
	}
	for i := len(addrs) - 1; i >= 0; i-- {
		a, ok := parseAddr(addrs[i])
		if !ok {
			return netip.Addr{}, false
		}
		if !l.trusted(a) {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// parseAddr parses "ip", "ip:port", "[ipv6]" or "[ipv6]:port", unmapping
// IPv4-mapped IPv6 and dropping an IPv6 zone.
func parseAddr(s string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}

// sourceOf is an address's normal form as a source: IPv4 as it is, IPv6
// as its /64 prefix.
func sourceOf(a netip.Addr) string {
	var buf [64]byte
	return string(appendSource(buf[:0], a))
}

// appendSource appends sourceOf(a) to b.
func appendSource(b []byte, a netip.Addr) []byte {
	if a.Is4() {
		return a.AppendTo(b)
	}
	p, _ := a.Prefix(64)
	return p.AppendTo(b)
}

// principalCredential is the credential identifier [Require] counts for a
// principal or a refusal: the method and the public key ID of a credential
// that has one of its own (an API key's fingerprint, a certificate's). A
// token's key ID names the key that signed it, which every token of its
// issuer shares, or a jti that a forger chooses: neither names one
// credential, so tokens are counted by their address alone.
func principalCredential(m Method, keyID string) string {
	if keyID == "" || m == MethodJWT || m == MethodOAuth {
		return ""
	}
	return string(m) + ":" + keyID
}

func (l *Lockout) threshold(key string) int {
	if strings.HasPrefix(key, "s|") {
		return l.opts.SourceFailures
	}
	return l.opts.CredentialFailures
}

// subjectOf recovers an entry's subject from its key.
func subjectOf(key string) lockSubject {
	switch {
	case strings.HasPrefix(key, "s|"):
		return lockSubject{source: key[2:]}
	case strings.HasPrefix(key, "c|"):
		return lockSubject{credential: key[2:]}
	case strings.HasPrefix(key, "p|"):
		src, cred, _ := strings.Cut(key[2:], "|")
		return lockSubject{source: src, credential: cred}
	}
	return lockSubject{}
}
