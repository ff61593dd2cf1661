package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/logtally/logtally/internal/tail"
)

const tailSynopsis = "logtally tail [--addr URL] [--state-file PATH] [--from beginning|end] [--source tail] [--format NAME] FILE..."

const tailDescription = `Follows log files on this host and sends their lines to the server's ingest
API (POST /api/v1/ingest), for hosts that run no log shipper. FILE is a path
or a glob (quote it: new matches are picked up while running); give the live
names (access.log, *.log), not rotated copies (access.log.*): a copytruncate
copy is a new file and would be read again.

Files are followed by device and inode: a file renamed by rotation is read
to its end (until it has not grown for --rotate-wait) while the new file is
read from its start; a file that shrinks or whose first bytes change
(copytruncate) is read again from 0; a missing file is waited for. How far
each file was acknowledged by the server is saved in --state-file, so a
restart resumes without losing or repeating lines: every chunk is recorded
with its Idempotency-Key before it is sent, and after a crash the same bytes
go again with the same key, which the server drops if it stored them. That
holds within the server's duplicate window (-nats.duplicate-window, 2m by
default; tell it with --dedup-window): a chunk sent again later than that is
reported on stderr and in the summary, as it may then count twice.

SIGINT/SIGTERM: the chunk in flight is finished (within --shutdown-timeout),
offsets are saved, a summary is printed, exit 0.`

type tailOptions struct {
	addr            string
	source          string
	format          string
	stateFile       string
	from            string
	chunkBytes      byteSize
	maxLineBytes    byteSize
	batchWait       time.Duration
	pollInterval    time.Duration
	noNotify        bool
	rotateWait      time.Duration
	partialTimeout  time.Duration
	dedupWindow     time.Duration
	requestTimeout  time.Duration
	shutdownTimeout time.Duration
	files           []string
}

// defaultStateFile is $STATE_DIRECTORY/tail.json when systemd's
// StateDirectory= set it, else $XDG_STATE_HOME/logtally/tail.json, else
// ~/.local/state/logtally/tail.json.
func defaultStateFile() string {
	if d, _, _ := strings.Cut(os.Getenv("STATE_DIRECTORY"), ":"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "tail.json")
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "logtally", "tail.json")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "state", "logtally", "tail.json")
	}
	return "logtally-tail.json"
}

func parseTailFlags(args []string, stderr io.Writer) (tailOptions, error) {
	o := tailOptions{chunkBytes: 1 << 20, maxLineBytes: 1 << 20}
	fs := newFlagSet("tail", tailSynopsis, tailDescription, stderr)
	fs.StringVar(&o.addr, "addr", DefaultAddr, "base `URL` of the logtally HTTP API")
	fs.StringVar(&o.source, "source", "tail", "`name` passed to the server as ?source=")
	fs.StringVar(&o.format, "format", "", "log `format` passed to the server as ?format= (empty: detected per line)")
	fs.StringVar(&o.stateFile, "state-file", defaultStateFile(), "`path` of the file keeping each file's acknowledged offset; one per tail process (it is locked)")
	fs.StringVar(&o.from, "from", "beginning", "start `position` of a file that the state file does not know and that exists at the start: beginning or end (files appearing later are always read from their beginning)")
	fs.Var(&o.chunkBytes, "chunk-bytes", "lines sent in one request as soon as this `size` is available (e.g. 512KiB, 1MiB)")
	fs.DurationVar(&o.batchWait, "batch-wait", time.Second, "longest a smaller chunk waits for more lines before it is sent")
	fs.Var(&o.maxLineBytes, "max-line-bytes", "a longer line is cut to its first `size` bytes (a warning names it; the rest up to its newline is skipped); the server keeps lines over its -ingest.max-line-bytes (64KiB) as dead letters")
	fs.DurationVar(&o.pollInterval, "poll-interval", time.Second, "how often files are looked at without a filesystem notification")
	fs.BoolVar(&o.noNotify, "no-notify", false, "poll only, without inotify (e.g. network file systems)")
	fs.DurationVar(&o.rotateWait, "rotate-wait", time.Minute, "how long a renamed or deleted file is still read after it last grew (a writer may append until it reopens its log)")
	fs.DurationVar(&o.partialTimeout, "partial-timeout", 0, "send a last line without newline once unchanged this long (0: hold it until its newline comes, or until its file was rotated away)")
	fs.DurationVar(&o.dedupWindow, "dedup-window", 2*time.Minute, "the server's -nats.duplicate-window: a chunk sent again later than this after its first attempt is reported, as it may count twice")
	fs.DurationVar(&o.requestTimeout, "request-timeout", 30*time.Second, "timeout of one ingest attempt; a timed-out attempt is retried")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 10*time.Second, "on SIGINT/SIGTERM, how long the chunk in flight may still take; if it is not acknowledged by then it is sent again on the next start")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	o.files = fs.Args()
	switch {
	case len(o.files) == 0:
		fs.Usage()
		return o, errors.New("tail: no FILE given")
	case o.from != "beginning" && o.from != "end":
		return o, fmt.Errorf("tail: --from must be beginning or end, got %q", o.from)
	case o.chunkBytes <= 0 || o.maxLineBytes <= 0:
		return o, errors.New("tail: --chunk-bytes and --max-line-bytes must be positive")
	case o.source == "":
		return o, errors.New("tail: --source must not be empty")
	case o.stateFile == "":
		return o, errors.New("tail: --state-file must not be empty")
	case o.pollInterval <= 0 || o.requestTimeout <= 0:
		return o, errors.New("tail: --poll-interval and --request-timeout must be positive")
	case o.batchWait < 0 || o.rotateWait < 0 || o.partialTimeout < 0 || o.dedupWindow < 0 || o.shutdownTimeout < 0:
		return o, errors.New("tail: durations must not be negative")
	}
	for i, f := range o.files {
		if abs, err := filepath.Abs(f); err == nil {
			o.files[i] = abs // the state file outlives the working directory
		}
	}
	return o, nil
}

// tailSendStats are the server's side of the figures.
type tailSendStats struct {
	accepted, oversized atomic.Int64
	batches, duplicates atomic.Int64
	retries, wireBytes  atomic.Int64
	mismatch            atomic.Int64
	lastBusyNote        atomic.Int64
}

// Tail implements `logtally tail`.
func Tail(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseTailFlags(args, stderr)
	if err != nil {
		return err
	}
	ing, closeIngest, err := newIngestClient("tail", o.addr, o.source, o.format, 1, o.requestTimeout,
		"--chunk-bytes than "+o.chunkBytes.String()+", or raise the server's -ingest.http.max-body-bytes")
	if err != nil {
		return err
	}
	defer closeIngest()
	errOut := &lockedWriter{w: stderr}
	logf := func(format string, args ...any) {
		errOut.printf("%s tail: %s\n", time.Now().Format(time.RFC3339), fmt.Sprintf(format, args...))
	}
	tl, err := tail.New(tail.Config{
		Files:           o.files,
		StateFile:       o.stateFile,
		FromEnd:         o.from == "end",
		ChunkBytes:      int(o.chunkBytes),
		BatchWait:       o.batchWait,
		MaxLineBytes:    int(o.maxLineBytes),
		PollInterval:    o.pollInterval,
		NoNotify:        o.noNotify,
		RotateWait:      o.rotateWait,
		PartialTimeout:  o.partialTimeout,
		DedupWindow:     o.dedupWindow,
		ShutdownTimeout: o.shutdownTimeout,
		Logf:            logf,
	})
	if err != nil {
		return fmt.Errorf("tail: %w", err)
	}
	var ss tailSendStats
	send := func(ctx context.Context, c *tail.Chunk) (tail.Ack, error) {
		d, err := ing.deliver(ctx, c.Where(), c.Key, c.Body, func(err error, wait time.Duration) {
			ss.retries.Add(1)
			now := time.Now().UnixNano()
			if last := ss.lastBusyNote.Load(); (last == 0 || now-last >= int64(5*time.Second)) && ss.lastBusyNote.CompareAndSwap(last, now) {
				logf("%s: %v; retrying in %s (%d retries so far)", c.Where(), err, wait.Round(time.Millisecond), ss.retries.Load())
			}
		})
		if err != nil {
			return tail.Ack{}, err
		}
		ans := d.ans
		ss.accepted.Add(*ans.Accepted)
		ss.oversized.Add(ans.Oversized)
		ss.batches.Add(ans.Batches)
		ss.duplicates.Add(ans.DuplicateBatches)
		ss.wireBytes.Add(int64(d.wireBytes))
		if got := *ans.Accepted + ans.Oversized; got != c.Lines {
			ss.mismatch.Add(1)
			logf("warning: %s: server acknowledged %d lines (accepted %d, oversized %d) of %d sent", c.Where(), got, *ans.Accepted, ans.Oversized, c.Lines)
		}
		if ans.Oversized > 0 {
			logf("warning: %s: %d lines over the server's -ingest.max-line-bytes were stored as dead letters (prefix and length; GET /api/v1/dead-letters)", c.Where(), ans.Oversized)
		}
		if ans.DuplicateBatches > 0 {
			logf("%s: the server already had %d of its %d batches (an earlier attempt was stored): not counted again", c.Where(), ans.DuplicateBatches, ans.Batches)
		}
		return tail.Ack{Attempts: d.attempts, LastAttempt: d.lastAttempt}, nil
	}
	logf("following %s; state in %s; sending to %s", strings.Join(o.files, " "), o.stateFile, o.addr)
	start := time.Now()
	runErr := tl.Run(ctx, send)
	printTailSummary(stdout, tl.Stats(), &ss, time.Since(start), runErr)
	if runErr != nil {
		return fmt.Errorf("tail: %w", runErr)
	}
	return nil
}

func printTailSummary(w io.Writer, s *tail.Stats, ss *tailSendStats, elapsed time.Duration, runErr error) {
	var b bytes.Buffer
	title := "tail stopped"
	if runErr != nil {
		title = "tail failed"
	}
	fmt.Fprintf(&b, "%s\n", title)
	row := func(k, v string) { fmt.Fprintf(&b, "  %-18s %s\n", k, v) }
	n := func(a *atomic.Int64) string { return formatCount(a.Load()) }
	row("files", n(&s.Files))
	row("lines sent", n(&s.Lines))
	row("lines accepted", n(&ss.accepted))
	row("oversized", n(&ss.oversized))
	row("lines cut", n(&s.Cut))
	row("blank skipped", n(&s.Blank))
	row("bytes", fmt.Sprintf("%s (%s on the wire)", formatBytes(s.Bytes.Load()), formatBytes(ss.wireBytes.Load())))
	row("chunks", n(&s.Chunks))
	row("duplicate batches", n(&ss.duplicates))
	row("rotations", n(&s.Rotations))
	row("truncations", n(&s.Truncations))
	row("resumed", n(&s.Resumed))
	row("past dedup window", n(&s.ResentPastWindow))
	row("unreadable", n(&s.Unreadable))
	row("retries", n(&ss.retries))
	row("duration", elapsed.Round(time.Millisecond).String())
	w.Write(b.Bytes())
}
