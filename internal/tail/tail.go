// Package tail follows log files on the local host and hands their lines,
// in chunks, to a send function (logtally tail sends them to HTTP ingest),
// saving in a state file how far each file was acknowledged.
//
// Files are followed by identity (device and inode, checked by a
// fingerprint of their first 1 KiB), not by name, as Filebeat and Vector
// do:
//
//   - rename rotation (logrotate's default, nginx reopening on USR1): the
//     name now resolves to a new inode. The old file stays open and is read
//     to its end; it is closed once it has not grown for -rotate-wait (a
//     writer may append to it until it reopens its log). The new file is
//     read from offset 0.
//   - copytruncate: the same inode shrinks below the offset, or its first
//     bytes change (truncated and written past the old offset between two
//     looks): it is read again from 0. Lines written between the last look
//     and the truncation are lost, as with every follower: copytruncate
//     itself has that race.
//   - deleted (and recreated): the open file is read to its end like a
//     rotated one (it cannot be reused while it is open), the new file
//     from 0.
//   - absent: waited for; a file that appears after the start is read from
//     its beginning, whatever -from says.
//
// A chunk is recorded as pending in the state file (its byte range, its
// Idempotency-Key and when it was first sent) before it is sent, and the
// file's offset moves past it only after the send function returned nil,
// i.e. ingest acknowledged it. After a crash the pending chunk is read
// again, byte for byte the same range, and sent first with the same key,
// so a chunk that ingest stored before the crash is dropped by JetStream's
// duplicate detection: no loss, no double count. That detection lasts
// the stream's duplicate window (-nats.duplicate-window, 2m by default):
// a chunk sent again later than that after its first attempt is counted
// twice if the first attempt was stored. That case is logged and counted
// (Stats.ResentPastWindow), never silent.
package tail

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Config of a Tailer.
type Config struct {
	Files     []string // paths or globs (filepath.Match syntax)
	StateFile string
	// FromEnd: a file without saved state that exists at the start is read
	// from its end (from the start of its last, unfinished line) instead
	// of its beginning. Files appearing later are always read from 0.
	FromEnd bool
	// ChunkBytes is the size of a chunk (uncompressed lines) sent as soon
	// as it is available; less is sent after BatchWait.
	ChunkBytes int
	BatchWait  time.Duration
	// MaxLineBytes: a longer line is cut to its first MaxLineBytes bytes
	// (Stats.Cut, Chunk.Cut); the rest, up to its newline, is skipped.
	MaxLineBytes int
	// PollInterval is how often files are looked at without a filesystem
	// event (with NoNotify, the only way).
	PollInterval time.Duration
	NoNotify     bool
	// RotateWait is how long a renamed or deleted file is kept open after
	// it last grew.
	RotateWait time.Duration
	// PartialTimeout: a last line without newline, unchanged this long, is
	// sent as a line (0: held until its newline comes, or until its file
	// was rotated away and RotateWait passed).
	PartialTimeout time.Duration
	// DedupWindow is the server's duplicate window.
	DedupWindow time.Duration
	// ShutdownTimeout bounds how long the chunk in flight when ctx ends may
	// still take to be acknowledged.
	ShutdownTimeout time.Duration
	// Logf receives notices and warnings (one line each, no newline).
	Logf func(format string, args ...any)
}

// Chunk is a range of whole lines of one file.
type Chunk struct {
	File       string // the name it was found by
	Key        string // Idempotency-Key
	Start, End int64  // byte range in the file
	Body       []byte // the lines, each ending in '\n'
	Lines      int64
	Blank      int64     // blank lines in the range, not in Body
	Cut        []CutLine // lines longer than MaxLineBytes, cut
	Resumed    bool      // pending from an earlier run or a failed send
	Since      time.Time // first attempt
}

// CutLine is a line cut to MaxLineBytes: where it starts and how long it
// was (with its line end).
type CutLine struct{ Offset, Length int64 }

// Where names the chunk in messages.
func (c *Chunk) Where() string { return fmt.Sprintf("%s bytes %d-%d", c.File, c.Start, c.End) }

// Ack is what a send function tells about an acknowledged chunk.
type Ack struct {
	Attempts    int       // 1 unless retried
	LastAttempt time.Time // start of the acknowledged attempt
}

// SendFunc delivers a chunk and returns once the server acknowledged it
// (with the same Chunk.Key on every attempt), or an error: then the chunk
// stays pending and Run returns.
type SendFunc func(ctx context.Context, c *Chunk) (Ack, error)

// Stats of a run; safe to read while it runs.
type Stats struct {
	Files            atomic.Int64 // files opened
	Chunks           atomic.Int64 // acknowledged chunks
	Lines            atomic.Int64 // lines in them
	Bytes            atomic.Int64 // file bytes behind them
	Blank            atomic.Int64
	Cut              atomic.Int64 // lines cut to MaxLineBytes
	Rotations        atomic.Int64 // files renamed away or deleted
	Truncations      atomic.Int64 // files read again from 0
	Resumed          atomic.Int64 // pending chunks sent again after a restart
	ResentPastWindow atomic.Int64 // chunks sent again later than DedupWindow after their first attempt
	Unreadable       atomic.Int64 // files or pending chunks not found again after a restart
}

// errLocked: another process holds the lock of the state file.
var errLocked = errors.New("locked")

// Tailer follows Config.Files.
type Tailer struct {
	cfg     Config
	state   *State
	readers map[fileID]*reader
	stats   Stats
	waiting map[string]bool // literal FILEs reported absent
	skipped map[string]bool // paths reported as not regular files
	watched map[string]bool // directories with a watch
	watcher *fsnotify.Watcher
	wake    chan struct{}
}

// New checks cfg.
func New(cfg Config) (*Tailer, error) {
	if len(cfg.Files) == 0 {
		return nil, errors.New("no FILE given")
	}
	for _, p := range cfg.Files {
		if _, err := filepath.Match(p, ""); err != nil {
			return nil, fmt.Errorf("bad pattern %q: %w", p, err)
		}
	}
	switch {
	case cfg.StateFile == "":
		return nil, errors.New("no state file")
	case cfg.ChunkBytes <= 0, cfg.MaxLineBytes <= 0:
		return nil, errors.New("chunk and line sizes must be positive")
	case cfg.PollInterval <= 0:
		return nil, errors.New("poll interval must be positive")
	case cfg.BatchWait < 0, cfg.RotateWait < 0, cfg.PartialTimeout < 0, cfg.DedupWindow < 0, cfg.ShutdownTimeout < 0:
		return nil, errors.New("durations must not be negative")
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	return &Tailer{cfg: cfg, readers: map[fileID]*reader{}, waiting: map[string]bool{}, skipped: map[string]bool{},
		watched: map[string]bool{}, wake: make(chan struct{}, 1)}, nil
}

// Stats are the run's figures.
func (t *Tailer) Stats() *Stats { return &t.stats }

func (t *Tailer) logf(format string, args ...any) { t.cfg.Logf(format, args...) }

// Run follows the files until ctx ends, then lets the chunk in flight be
// acknowledged (within ShutdownTimeout), saves the state and returns nil.
// It returns an error when the state cannot be read or written, or when
// send fails (the chunk then stays pending and is sent again first by the
// next run).
func (t *Tailer) Run(ctx context.Context, send SendFunc) (err error) {
	if err := os.MkdirAll(filepath.Dir(t.cfg.StateFile), 0o700); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	lock, err := lockFile(t.cfg.StateFile + ".lock")
	if errors.Is(err, errLocked) {
		return fmt.Errorf("state file %s is in use by another logtally tail; give each one its own -state-file", t.cfg.StateFile)
	}
	if err != nil {
		return fmt.Errorf("state file lock: %w", err)
	}
	defer lock.Close()
	if t.state, err = loadState(t.cfg.StateFile); err != nil {
		return err
	}
	defer func() {
		for _, r := range t.readers {
			r.f.Close()
		}
		t.readers = map[fileID]*reader{}
	}()

	// The chunk in flight when ctx ends gets ShutdownTimeout more.
	sendCtx, cancelSend := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSend()
	stopGrace := context.AfterFunc(ctx, func() {
		t.logf("stopping: a chunk in flight gets up to -shutdown-timeout %s to be acknowledged", t.cfg.ShutdownTimeout)
		time.AfterFunc(t.cfg.ShutdownTimeout, cancelSend)
	})
	defer stopGrace()

	if !t.cfg.NoNotify {
		var wg sync.WaitGroup
		defer wg.Wait()
		if w, err := fsnotify.NewWatcher(); err != nil {
			t.logf("warning: no filesystem notifications (%v); polling every %s", err, t.cfg.PollInterval)
		} else {
			t.watcher = w
			defer w.Close()
			wg.Go(func() { t.forwardEvents(w) })
		}
	}

	now := time.Now()
	t.scan(now, true)
	t.recover(now)
	if err := t.state.save(); err != nil {
		return err
	}
	poll := time.NewTimer(t.cfg.PollInterval)
	defer poll.Stop()
	for {
		var wake time.Time
		progressed := false
		for _, r := range t.ordered() {
			if ctx.Err() != nil {
				break
			}
			now := time.Now()
			if err := r.refresh(now); err != nil {
				t.logf("warning: %s: %v", r.e.Path, err)
				continue
			}
			c, at, err := r.next(now)
			if err != nil {
				t.logf("warning: %v", err)
				continue
			}
			if c == nil {
				if !at.IsZero() && (wake.IsZero() || at.Before(wake)) {
					wake = at
				}
				continue
			}
			if err := t.deliver(sendCtx, r, c, send); err != nil {
				if ctx.Err() != nil && sendCtx.Err() != nil {
					t.logf("warning: %s not acknowledged within -shutdown-timeout %s; it is sent again (same key) on the next start", c.Where(), t.cfg.ShutdownTimeout)
					return t.state.save()
				}
				return err
			}
			progressed = true
		}
		if err := t.closeDrained(time.Now()); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return t.state.save()
		}
		if !progressed {
			d := t.cfg.PollInterval
			if !wake.IsZero() {
				d = min(d, max(time.Until(wake), time.Millisecond))
			}
			poll.Reset(d)
			select {
			case <-ctx.Done():
			case <-t.wake:
			case <-poll.C:
			}
			if !poll.Stop() {
				select {
				case <-poll.C:
				default:
				}
			}
		}
		t.scan(time.Now(), false)
	}
}

// forwardEvents turns the filesystem events of names a FILE argument
// matches into one pending wake-up: the files are looked at anyway, so
// which event does not matter, and a slow send never lets the kernel's
// event queue overflow.
func (t *Tailer) forwardEvents(w *fsnotify.Watcher) {
	for {
		select {
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			if !t.matchesFiles(ev.Name) {
				continue // another file of a watched directory; a rotated file being read to its end is polled
			}
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				t.logf("notice: filesystem event queue overflowed; files are looked at all the same")
			}
		}
		select {
		case t.wake <- struct{}{}:
		default:
		}
	}
}

// deliver records c as pending, sends it and, once acknowledged, moves the
// file's offset past it. Blank-only ranges are not sent.
func (t *Tailer) deliver(sendCtx context.Context, r *reader, c *Chunk, send SendFunc) error {
	if !c.Resumed {
		for _, cl := range c.Cut {
			t.logf("warning: %s: the line at byte %d is %d bytes, over -max-line-bytes %d: its first %d bytes are sent (ingest stores a line over its own -ingest.max-line-bytes as a dead letter, with its prefix and length), the rest is skipped",
				c.File, cl.Offset, cl.Length, t.cfg.MaxLineBytes, t.cfg.MaxLineBytes)
		}
	}
	if c.Lines > 0 {
		if !c.Resumed {
			c.Key = t.key(r, c)
			r.e.Pending = &Pending{End: c.End, Key: c.Key, Lines: c.Lines, Since: c.Since}
			if err := t.state.save(); err != nil {
				return err
			}
		} else {
			age := time.Since(c.Since)
			t.stats.Resumed.Add(1)
			if age > t.cfg.DedupWindow {
				t.logf("warning: %s (%d lines) was first sent %s ago and not acknowledged, past the server's duplicate window (%s): sent again; if the server stored the first attempt these lines count twice",
					c.Where(), c.Lines, age.Round(time.Second), t.cfg.DedupWindow)
			} else {
				t.logf("%s (%d lines) was sent %s ago and not acknowledged: sent again with its key %s (the server drops it if it stored it)",
					c.Where(), c.Lines, age.Round(time.Second), c.Key)
			}
		}
		ack, err := send(sendCtx, c)
		if err != nil {
			return err
		}
		if (c.Resumed || ack.Attempts > 1) && ack.LastAttempt.Sub(c.Since) > t.cfg.DedupWindow {
			t.stats.ResentPastWindow.Add(1)
			if !c.Resumed {
				t.logf("warning: %s was acknowledged at an attempt %s after its first, past the server's duplicate window (%s): if an earlier attempt was stored, its %d lines count twice",
					c.Where(), ack.LastAttempt.Sub(c.Since).Round(time.Second), t.cfg.DedupWindow, c.Lines)
			}
		}
	}
	r.e.Offset, r.e.Pending = c.End, nil
	if c.Lines > 0 {
		t.stats.Chunks.Add(1)
	}
	t.stats.Lines.Add(c.Lines)
	t.stats.Blank.Add(c.Blank)
	t.stats.Bytes.Add(c.End - c.Start)
	if !c.Resumed {
		t.stats.Cut.Add(int64(len(c.Cut)))
	}
	return t.state.save()
}

// key is the chunk's Idempotency-Key: the state's id, the reading's
// serial, the file's device, inode and fingerprint, the byte range (hex;
// at most 123 of ingest's 128 characters).
func (t *Tailer) key(r *reader, c *Chunk) string {
	fp := r.e.FP
	if fp == "" {
		fp = "0"
	}
	return fmt.Sprintf("tail-%s-%x-%x-%x-%s-%x-%x", t.state.ID, r.e.Serial, r.id.dev, r.id.ino, fp, c.Start, c.End)
}

func (t *Tailer) ordered() []*reader {
	rs := make([]*reader, 0, len(t.readers))
	for _, r := range t.readers {
		rs = append(rs, r)
	}
	slices.SortFunc(rs, func(a, b *reader) int {
		if c := strings.Compare(a.e.Path, b.e.Path); c != 0 {
			return c
		}
		return int(a.e.Serial) - int(b.e.Serial)
	})
	return rs
}

func hasMeta(p string) bool { return strings.ContainsAny(p, `*?[\`) }

// expand lists the paths a FILE argument names now.
func (t *Tailer) expand(pat string) []string {
	if !hasMeta(pat) {
		return []string{pat}
	}
	m, _ := filepath.Glob(pat)
	return m
}

// matchesFiles reports whether a FILE argument names path.
func (t *Tailer) matchesFiles(path string) bool {
	for _, pat := range t.cfg.Files {
		if ok, _ := filepath.Match(pat, path); ok || pat == path {
			return true
		}
	}
	return false
}

// scan resolves the FILE arguments: new files are opened, and files no
// longer named (renamed or deleted) stop being live.
func (t *Tailer) scan(now time.Time, initial bool) {
	seen := map[fileID]bool{}
	for _, pat := range t.cfg.Files {
		if dir := filepath.Dir(pat); t.watcher != nil && !t.watched[dir] && !hasMeta(dir) {
			if t.watcher.Add(dir) == nil {
				t.watched[dir] = true
			}
		}
		for _, p := range t.expand(pat) {
			fi, err := os.Stat(p)
			if err != nil {
				if !hasMeta(pat) && !t.waiting[p] {
					t.waiting[p] = true
					t.logf("%s: %v; waiting for it", p, errors.Unwrap(err))
				}
				continue
			}
			delete(t.waiting, p)
			if !fi.Mode().IsRegular() {
				if !t.skipped[p] {
					t.skipped[p] = true
					t.logf("warning: %s is not a regular file; skipped", p)
				}
				continue
			}
			id, ok := idOf(fi)
			if !ok || seen[id] {
				continue
			}
			if r := t.readers[id]; r != nil {
				seen[id] = true
				if !r.live {
					r.live, r.e.Rotated = true, false
					r.idleSince = now
				}
				r.e.Path = p
				continue
			}
			r, err := t.open(p, now, initial)
			if err != nil {
				t.logf("warning: %s: %v", p, err)
				continue
			}
			seen[r.id] = true
		}
	}
	for id, r := range t.readers {
		if r.live && !seen[id] {
			r.live, r.e.Rotated = false, true
			r.idleSince = now
			t.stats.Rotations.Add(1)
			t.logf("%s (%s): renamed or deleted; reading the old file to its end (until it has not grown for %s)", r.e.Path, id, t.cfg.RotateWait)
		}
	}
}

// open starts reading the file at p: from its saved offset when the state
// knows it, else from 0 (or its end, at the start with FromEnd).
func (t *Tailer) open(p string, now time.Time, initial bool) (*reader, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	id, ok := idOf(fi)
	if !ok {
		f.Close()
		return nil, errors.New("no device and inode numbers")
	}
	if r := t.readers[id]; r != nil { // renamed between stat and open
		f.Close()
		return r, nil
	}
	r, err := t.attach(f, id, fi.Size(), p, now, initial)
	if err != nil {
		f.Close()
		return nil, err
	}
	r.live = true
	return r, nil
}

// attach makes the reader of an open file, finding its entry in the state.
func (t *Tailer) attach(f *os.File, id fileID, size int64, p string, now time.Time, initial bool) (*reader, error) {
	var e *Entry
	for _, x := range slices.Clone(t.state.Files) {
		if x.Dev != id.dev || x.Ino != id.ino {
			continue
		}
		ok, err := x.matches(f, size)
		if err != nil {
			return nil, err
		}
		if ok {
			e = x
			break
		}
		// The inode was reused by another file.
		t.logf("%s (%s): not the file the state knew under that inode (first bytes differ); read as a new file", p, id)
		if x.Pending != nil {
			t.unreadablePending(x)
		}
		t.state.remove(x)
	}
	r := &reader{t: t, f: f, id: id, size: size, idleSince: now}
	if e != nil {
		r.e = e
		if p := e.Pending; p != nil && size < p.End {
			t.unreadablePending(e)
			e.Pending = nil
		}
		if e.Pending == nil && size < e.Offset {
			e.Path = p
			if err := r.restart(now, fmt.Sprintf("truncated while not followed (size %d < saved offset %d)", size, e.Offset)); err != nil {
				return nil, err
			}
		} else {
			t.logf("%s (%s): resuming at byte %d of %d", p, id, e.Offset, size)
		}
	} else {
		fp, n, err := fingerprint(f, size)
		if err != nil {
			return nil, err
		}
		e = &Entry{Dev: id.dev, Ino: id.ino, Serial: t.state.newSerial(), FP: fp, FPLen: n}
		if initial && t.cfg.FromEnd {
			if e.Offset, err = lineStartBefore(f, size, t.cfg.MaxLineBytes); err != nil {
				return nil, err
			}
		}
		t.state.Files = append(t.state.Files, e)
		r.e = e
		t.logf("%s (%s): following from byte %d of %d", p, id, e.Offset, size)
	}
	e.Path, e.Rotated = p, false
	t.readers[id] = r
	t.stats.Files.Add(1)
	return r, nil
}

func (t *Tailer) unreadablePending(e *Entry) {
	t.stats.Unreadable.Add(1)
	t.logf("warning: %s: the unacknowledged chunk of bytes %d-%d (%d lines, key %s) cannot be read again (the file was truncated, replaced or removed); if the server did not store it, those lines are lost",
		e.Path, e.Offset, e.Pending.End, e.Pending.Lines, e.Pending.Key)
}

// recover, at the start, finds the files of saved entries that no FILE
// names any more, i.e. rotated while tail was not running: a renamed file
// is looked for by inode in its directory and read to its end.
func (t *Tailer) recover(now time.Time) {
	for _, e := range slices.Clone(t.state.Files) {
		if r := t.readers[fileID{e.Dev, e.Ino}]; r != nil && r.e == e {
			continue
		}
		if !t.matchesFiles(e.Path) {
			t.logf("forgetting %s (dev %d inode %d): no FILE names it", e.Path, e.Dev, e.Ino)
			t.state.remove(e)
			continue
		}
		if r := t.findRotated(e, now); r != nil {
			t.stats.Rotations.Add(1)
			t.logf("%s (%s): rotated while tail was not running, found as %s: reading it to its end from byte %d", e.Path, r.id, r.f.Name(), e.Offset)
			continue
		}
		t.stats.Unreadable.Add(1)
		if e.Pending != nil {
			t.unreadablePending(e)
		}
		t.logf("warning: %s (dev %d inode %d): rotated or deleted while tail was not running and not found in %s any more: whatever it got after byte %d is not read",
			e.Path, e.Dev, e.Ino, filepath.Dir(e.Path), e.Offset)
		t.state.remove(e)
	}
}

func (t *Tailer) findRotated(e *Entry, now time.Time) *reader {
	dir := filepath.Dir(e.Path)
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	want := fileID{e.Dev, e.Ino}
	for _, de := range des {
		fi, err := de.Info()
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		if id, ok := idOf(fi); !ok || id != want {
			continue
		}
		p := filepath.Join(dir, de.Name())
		f, err := os.Open(p)
		if err != nil {
			return nil
		}
		fi, err = f.Stat()
		if id, ok := idOf(fi); err != nil || !ok || id != want {
			f.Close()
			return nil
		}
		if ok, err := e.matches(f, fi.Size()); err != nil || !ok {
			f.Close() // the inode was reused by another file
			return nil
		}
		r, err := t.attach(f, want, fi.Size(), e.Path, now, false)
		if err != nil {
			f.Close()
			return nil
		}
		r.live, e.Rotated = false, true
		return r
	}
	return nil
}

// closeDrained closes the rotated files read to their end that have not
// grown for RotateWait, and forgets them.
func (t *Tailer) closeDrained(now time.Time) error {
	changed := false
	for id, r := range t.readers {
		if r.live || r.e.Pending != nil || r.e.Offset < r.size || now.Sub(r.idleSince) < t.cfg.RotateWait {
			continue
		}
		if fi, err := r.f.Stat(); err == nil && fi.Size() != r.size {
			continue // grew: the next round reads it
		}
		r.f.Close()
		delete(t.readers, id)
		t.state.remove(r.e)
		changed = true
		t.logf("%s (%s): rotated file read to its end (byte %d); closed", r.e.Path, id, r.e.Offset)
	}
	if changed {
		return t.state.save()
	}
	return nil
}
