package mcpauth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"time"
)

// This file shares a Lockout's state between replicas through its Store.

// storeKeyPrefix starts every key a Lockout writes to its Store.
const storeKeyPrefix = "lockout:"

// syncLoop syncs every SyncInterval until Close. A store that fails is
// reported once (an EventKeySource failure) until a sync succeeds again;
// meanwhile the replica counts and locks out on its own.
func (l *Lockout) syncLoop() {
	t := time.NewTicker(l.opts.SyncInterval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), l.opts.SyncInterval)
			err := l.sync(ctx)
			cancel()
			if err != nil && !failing {
				emit(context.Background(), l.events, Event{Kind: EventKeySource, Outcome: OutcomeFailure, Reason: reasonLockoutStoreDown, Detail: "lockout counts not shared"})
			}
			failing = err != nil
		}
	}
}

// reasonLockoutStoreDown is the Reason of a lockout's store fault.
const reasonLockoutStoreDown = "lockout_store_unavailable"

// hashKey names an entry in the store: its key's SHA-256, cut to 128
// bits, so that store keys stay short whatever the caller chose.
func hashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:16])
}

// sync shares the state through the store: it reads every replica's
// counts and lockouts, adopting the lockouts and adding the others' counts
// to its own (which may start a lockout), then writes its own changed
// counts (at most maxSyncWrites) and new lockouts. Count keys are
// "lockout:n:<hash>:<replica>", lockout keys "lockout:l:<hash>"; each value
// is "<int> <int> <key>", the key being the entry's own.
func (l *Lockout) sync(ctx context.Context) error {
	st := l.opts.Store
	if st == nil {
		return nil
	}
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	now := l.now().UnixNano()
	remote := make(map[string]int)
	type lockRec struct {
		until int64
		level int
	}
	locks := make(map[string]lockRec)
	err := st.List(ctx, storeKeyPrefix, func(key string, value []byte) error {
		rest := strings.TrimPrefix(key, storeKeyPrefix)
		a, tail, ok1 := strings.Cut(string(value), " ")
		b, k, ok2 := strings.Cut(tail, " ")
		x, err1 := strconv.ParseInt(a, 10, 64)
		y, err2 := strconv.ParseInt(b, 10, 64)
		if !ok1 || !ok2 || err1 != nil || err2 != nil || len(k) > 2*maxLockKeyLen+64 {
			return nil // not ours, or damaged: ignored
		}
		switch {
		case strings.HasPrefix(rest, "n:"):
			if !strings.HasSuffix(rest, ":"+l.replica) && now-y < int64(l.opts.Window) && len(remote) < l.opts.MaxEntries {
				remote[k] += int(x)
			}
		case strings.HasPrefix(rest, "l:"):
			if r, seen := locks[k]; x > r.until && (seen || len(locks) < l.opts.MaxEntries) {
				locks[k] = lockRec{x, int(y)}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for k, r := range locks {
		if r.until <= now {
			continue
		}
		l.merge(k, func(sh *lockShard, e *lockEntry) {
			if e.until < r.until {
				if e.until == 0 {
					l.lockedAdd(sh, e, 1)
				}
				e.until, e.level = r.until, max(e.level, r.level)
				e.forget = r.until + int64(lockMemory)
			}
		})
	}
	type start struct {
		key string
		sub lockSubject
		d   time.Duration
	}
	var starts []start
	for k, n := range remote {
		l.merge(k, func(sh *lockShard, e *lockEntry) {
			if e.until > now {
				return
			}
			if now-e.windowStart >= int64(l.opts.Window) {
				e.failures, e.windowStart = 0, now
			}
			e.remote = n
			// A lockout starts where our own failure tipped the shared
			// count over; the others start theirs.
			if th := l.threshold(k); th > 0 && e.failures > 0 && e.failures+e.remote >= th {
				if e.until != 0 {
					e.until = 0
					l.lockedAdd(sh, e, -1)
				}
				starts = append(starts, start{k, e.subject, l.lock(sh, e, now)})
			}
		})
	}
	for _, s := range starts {
		l.report(ctx, s.sub, OutcomeDenied, "started", s.d, "")
		key := s.key
		time.AfterFunc(s.d, func() { l.endKey(key) })
	}
	type write struct {
		key, value string
		ttl        time.Duration
	}
	var writes []write
	counts := 0
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		for k, e := range sh.entries {
			if e.publish && e.until > now {
				writes = append(writes, write{storeKeyPrefix + "l:" + hashKey(k), strconv.FormatInt(e.until, 10) + " " + strconv.Itoa(e.level) + " " + k, time.Duration(e.forget - now)})
			}
			e.publish = false
			if e.dirty && counts < maxSyncWrites && now-e.windowStart < int64(l.opts.Window) {
				ttl := time.Duration(e.windowStart + int64(l.opts.Window) - now)
				writes = append(writes, write{storeKeyPrefix + "n:" + hashKey(k) + ":" + l.replica, strconv.Itoa(e.failures) + " " + strconv.FormatInt(e.windowStart, 10) + " " + k, ttl})
				e.dirty = false
				counts++
			}
		}
		sh.mu.Unlock()
	}
	for _, w := range writes {
		if err := st.Set(ctx, w.key, []byte(w.value), max(w.ttl, time.Millisecond)); err != nil {
			return err
		}
	}
	l.endExpired(ctx, now)
	return nil
}

// merge calls f with key's entry, made if there is room, under its shard's
// lock.
func (l *Lockout) merge(key string, f func(sh *lockShard, e *lockEntry)) {
	sh := l.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.entries[key]
	if e == nil {
		if l.size.Add(1) > l.capacity && !l.evict(sh) {
			l.size.Add(-1)
			return
		}
		e = &lockEntry{subject: subjectOf(key), windowStart: l.now().UnixNano()}
		sh.entries[key] = e
	}
	f(sh, e)
}

// endExpired reports the end of this replica's lockouts that are over.
func (l *Lockout) endExpired(ctx context.Context, now int64) {
	var subs []lockSubject
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		for _, e := range sh.entries {
			if e.until != 0 && e.until <= now {
				e.until = 0
				l.lockedAdd(sh, e, -1)
				if e.started {
					e.started = false
					subs = append(subs, e.subject)
				}
			}
		}
		sh.mu.Unlock()
	}
	for _, s := range subs {
		l.report(ctx, s, OutcomeSuccess, "ended", 0, "")
	}
}
