package cli

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

const replaySynopsis = "logtally replay [--addr URL] [--chunk-bytes 1MiB] [--format NAME] [--source replay] FILE..."

const replayDescription = `Sends historical log files through the server's ingest API (POST
/api/v1/ingest). FILE may be plain or gzip-compressed (detected by content);
"-" reads standard input. Lines are sent in gzip-compressed chunks of whole
lines; a chunk the server cannot take now (503, connection errors) is retried
with backoff until it is acknowledged, so every line is delivered. Blank
lines are skipped and CRLF line ends are sent as LF. A summary is printed at
the end; the command fails unless the server acknowledged every line sent.`

// plainProgressInterval is how often a progress line is printed when stderr
// is not a terminal; ttyProgressInterval is the redraw period of the bar.
var (
	plainProgressInterval = 5 * time.Second
	ttyProgressInterval   = 200 * time.Millisecond
)

type replayOptions struct {
	addr           string
	chunkBytes     byteSize
	format         string
	source         string
	parallel       int
	requestTimeout time.Duration
	noProgress     bool
	files          []string
}

func parseReplayFlags(args []string, stderr io.Writer) (replayOptions, error) {
	o := replayOptions{chunkBytes: 1 << 20}
	fs := newFlagSet("replay", replaySynopsis, replayDescription, stderr)
	fs.StringVar(&o.addr, "addr", DefaultAddr, "base `URL` of the logtally HTTP API")
	fs.Var(&o.chunkBytes, "chunk-bytes", "approximate uncompressed `size` of one ingest request (e.g. 512KiB, 1MiB)")
	fs.StringVar(&o.format, "format", "", "log `format` passed to the server as ?format= (empty: server default)")
	fs.StringVar(&o.source, "source", "replay", "`name` passed to the server as ?source=")
	fs.IntVar(&o.parallel, "parallel", 4, "number of ingest requests in flight")
	fs.DurationVar(&o.requestTimeout, "request-timeout", 2*time.Minute, "timeout of one ingest attempt; a timed-out attempt is retried")
	fs.BoolVar(&o.noProgress, "no-progress", false, "do not show progress on stderr")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	o.files = fs.Args()
	if len(o.files) == 0 {
		fs.Usage()
		return o, errors.New("replay: no FILE given (use - for standard input)")
	}
	if o.chunkBytes <= 0 {
		return o, fmt.Errorf("replay: --chunk-bytes must be positive, got %d", o.chunkBytes)
	}
	if o.parallel <= 0 {
		return o, fmt.Errorf("replay: --parallel must be positive, got %d", o.parallel)
	}
	if o.requestTimeout <= 0 {
		return o, fmt.Errorf("replay: --request-timeout must be positive, got %s", o.requestTimeout)
	}
	if o.source == "" {
		return o, errors.New("replay: --source must not be empty")
	}
	stdinSeen := false
	for _, f := range o.files {
		if f != "-" {
			continue
		}
		if stdinSeen {
			return o, errors.New("replay: standard input (-) can be given only once")
		}
		stdinSeen = true
	}
	return o, nil
}

// chunk is one ingest request: whole lines of one file.
type chunk struct {
	seq       int64
	file      string // name for messages
	firstLine int64  // 1-based line numbers in the file, inclusive
	lastLine  int64
	lines     int64  // lines in body (blank lines are not sent)
	body      []byte // uncompressed, every line ending in '\n'
}

func (c *chunk) where() string {
	if c.firstLine == c.lastLine {
		return fmt.Sprintf("%s line %d", c.file, c.firstLine)
	}
	return fmt.Sprintf("%s lines %d-%d", c.file, c.firstLine, c.lastLine)
}

// replayStats are updated by the reader and the senders and read by the
// progress display.
type replayStats struct {
	filesDone    atomic.Int64
	bytesRead    atomic.Int64 // file bytes read (compressed bytes for gzip files)
	linesSent    atomic.Int64 // non-blank lines read and handed to the senders
	blank        atomic.Int64
	chunks       atomic.Int64
	rawBytes     atomic.Int64 // uncompressed bytes handed to the senders
	ackLines     atomic.Int64 // lines of acknowledged chunks
	accepted     atomic.Int64
	oversized    atomic.Int64
	wireBytes    atomic.Int64 // compressed bytes of acknowledged chunks
	retries      atomic.Int64
	lastBusyNote atomic.Int64 // unix nanos of the last "retrying" message
}

type replayer struct {
	opts     replayOptions
	ingest   *ingestClient
	runID    string
	stats    replayStats
	total    int64 // sum of file sizes, -1 if unknown
	errOut   *lockedWriter
	ttyWidth int // >0 when stderr is a terminal
}

// Replay implements `logtally replay`.
func Replay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseReplayFlags(args, stderr)
	if err != nil {
		return err
	}
	ing, closeIngest, err := newIngestClient("replay", o.addr, o.source, o.format, o.parallel, o.requestTimeout,
		"--chunk-bytes than "+o.chunkBytes.String())
	if err != nil {
		return err
	}
	defer closeIngest()

	// Check every file up front so a typo in the last name does not stop
	// a replay half-way, and learn the total size for the progress display.
	total := int64(0)
	for _, name := range o.files {
		var fi os.FileInfo
		if name == "-" {
			if f, ok := stdin.(*os.File); ok {
				fi, _ = f.Stat()
			}
		} else {
			fi, err = os.Stat(name)
			if err != nil {
				return fmt.Errorf("replay: %w", err)
			}
			if fi.IsDir() {
				return fmt.Errorf("replay: %s is a directory", name)
			}
		}
		if fi == nil || !fi.Mode().IsRegular() || total < 0 {
			total = -1
			continue
		}
		total += fi.Size()
	}

	idBytes := make([]byte, 8)
	_, _ = rand.Read(idBytes)
	r := &replayer{
		opts:   o,
		ingest: ing,
		runID:  hex.EncodeToString(idBytes),
		total:  total,
		errOut: &lockedWriter{w: stderr},
	}
	if w, ok := terminalWidth(stderr); ok {
		r.ttyWidth = w
		r.errOut.tty = true
	}

	start := time.Now()
	runErr := r.run(ctx, start)
	elapsed := time.Since(start)
	r.printSummary(stdout, elapsed, runErr)
	if runErr != nil {
		return runErr
	}
	s := &r.stats
	if got, sent := s.accepted.Load()+s.oversized.Load(), s.linesSent.Load(); got != sent {
		return fmt.Errorf("replay: server acknowledged %s lines (accepted %s + oversized %s) but %s were sent",
			formatCount(got), formatCount(s.accepted.Load()), formatCount(s.oversized.Load()), formatCount(sent))
	}
	return nil
}

// run reads the files into chunks and sends them with opts.parallel
// senders; it returns the first error, or the cause of ctx's cancellation.
func (r *replayer) run(parent context.Context, start time.Time) error {
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)

	stopProgress := r.startProgress(start)
	defer stopProgress()

	chunks := make(chan *chunk, r.opts.parallel)
	var wg sync.WaitGroup
	for range r.opts.parallel {
		wg.Go(func() {
			for c := range chunks {
				if ctx.Err() != nil {
					continue // drain: the reader stops soon
				}
				if err := r.send(ctx, c); err != nil {
					cancel(err)
				}
			}
		})
	}

	var seq int64
	for _, name := range r.opts.files {
		if err := r.readFile(ctx, name, chunks, &seq); err != nil {
			cancel(err)
			break
		}
		r.stats.filesDone.Add(1)
	}
	close(chunks)
	wg.Wait()
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return nil
}

// countingReader counts the bytes read through it into n.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// readFile splits one file (plain or gzip, by content) into chunks of whole
// lines of about chunk-bytes each and hands them to out.
func (r *replayer) readFile(ctx context.Context, name string, out chan<- *chunk, seq *int64) error {
	display := name
	var src io.Reader
	if name == "-" {
		display = "<stdin>"
		src = stdin
	} else {
		f, err := os.Open(name)
		if err != nil {
			return fmt.Errorf("replay: %w", err)
		}
		defer f.Close()
		src = f
	}
	br := bufio.NewReaderSize(countingReader{src, &r.stats.bytesRead}, 64<<10)
	lr := br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("replay: %s: %w", display, err)
		}
		defer zr.Close()
		lr = bufio.NewReaderSize(zr, 64<<10)
	}

	limit := int(r.opts.chunkBytes)
	newBuf := func() []byte { return make([]byte, 0, min(limit, 16<<20)+512) }
	cur := &chunk{file: display, body: newBuf()}
	var lineNo int64

	emit := func(c *chunk) error {
		if c.lines == 0 {
			return nil
		}
		c.seq = *seq
		*seq++
		r.stats.chunks.Add(1)
		r.stats.linesSent.Add(c.lines)
		r.stats.rawBytes.Add(int64(len(c.body)))
		select {
		case out <- c:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}

	for {
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		// Read one line, however long, onto the end of the chunk body.
		lineStart := len(cur.body)
		var err error
		for {
			var frag []byte
			frag, err = lr.ReadSlice('\n')
			cur.body = append(cur.body, frag...)
			if err != bufio.ErrBufferFull {
				break
			}
		}
		if len(cur.body) > lineStart {
			lineNo++
			content := trimEOL(cur.body[lineStart:])
			if len(content) == 0 {
				r.stats.blank.Add(1)
				cur.body = cur.body[:lineStart]
			} else {
				cur.body = append(cur.body[:lineStart+len(content)], '\n')
				if cur.lines > 0 && len(cur.body) > limit {
					// This line overflows the chunk: send the lines before it
					// and start the next chunk with it.
					next := &chunk{file: display, body: append(newBuf(), cur.body[lineStart:]...)}
					cur.body = cur.body[:lineStart]
					if e := emit(cur); e != nil {
						return e
					}
					cur = next
				}
				if cur.lines == 0 {
					cur.firstLine = lineNo
				}
				cur.lines++
				cur.lastLine = lineNo
				if len(cur.body) >= limit {
					if e := emit(cur); e != nil {
						return e
					}
					cur = &chunk{file: display, body: newBuf()}
				}
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("replay: %s: reading line %d: %w", display, lineNo+1, err)
		}
	}
	return emit(cur)
}

// trimEOL drops a trailing "\n" or "\r\n" (and a lone trailing "\r").
func trimEOL(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte("\n"))
	return bytes.TrimSuffix(b, []byte("\r"))
}

// send delivers one chunk, retrying until the server acknowledges it, a
// hard error occurs, or ctx is done.
func (r *replayer) send(ctx context.Context, c *chunk) error {
	key := fmt.Sprintf("replay-%s-%d", r.runID, c.seq)
	d, err := r.ingest.deliver(ctx, c.where(), key, c.body, func(err error, wait time.Duration) {
		r.stats.retries.Add(1)
		r.noteBusy(c, err, wait)
	})
	if err != nil {
		return err
	}
	ans := d.ans
	r.stats.ackLines.Add(c.lines)
	r.stats.accepted.Add(*ans.Accepted)
	r.stats.oversized.Add(ans.Oversized)
	r.stats.wireBytes.Add(int64(d.wireBytes))
	if got := *ans.Accepted + ans.Oversized; got != c.lines {
		r.errOut.printf("replay: warning: %s: server acknowledged %d lines (accepted %d, oversized %d) of %d sent\n",
			c.where(), got, *ans.Accepted, ans.Oversized, c.lines)
	}
	return nil
}

// noteBusy tells the user, at most every few seconds, that chunks are being
// retried.
func (r *replayer) noteBusy(c *chunk, err error, wait time.Duration) {
	now := time.Now().UnixNano()
	last := r.stats.lastBusyNote.Load()
	if last != 0 && now-last < int64(plainProgressInterval) {
		return
	}
	if !r.stats.lastBusyNote.CompareAndSwap(last, now) {
		return
	}
	r.errOut.printf("replay: %s: %v; retrying in %s (%d retries so far)\n",
		c.where(), err, wait.Round(time.Millisecond), r.stats.retries.Load())
}

// printSummary writes the end-of-run report.
func (r *replayer) printSummary(w io.Writer, elapsed time.Duration, runErr error) {
	s := &r.stats
	title := "replay finished"
	if runErr != nil {
		title = "replay stopped"
	}
	rate := 0.0
	if elapsed > 0 {
		rate = float64(s.ackLines.Load()) / elapsed.Seconds()
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\n", title)
	row := func(k, v string) { fmt.Fprintf(&b, "  %-15s %s\n", k, v) }
	row("files", fmt.Sprintf("%d of %d", s.filesDone.Load(), len(r.opts.files)))
	row("lines sent", formatCount(s.linesSent.Load()))
	if runErr != nil {
		row("lines acked", formatCount(s.ackLines.Load()))
	}
	row("lines accepted", formatCount(s.accepted.Load()))
	row("oversized", formatCount(s.oversized.Load()))
	if n := s.blank.Load(); n > 0 {
		row("blank skipped", formatCount(n))
	}
	row("bytes", fmt.Sprintf("%s (%s uncompressed, %s on the wire)",
		formatBytes(s.bytesRead.Load()), formatBytes(s.rawBytes.Load()), formatBytes(s.wireBytes.Load())))
	row("chunks", formatCount(s.chunks.Load()))
	row("duration", elapsed.Round(time.Millisecond).String())
	row("lines/s", formatCount(int64(math.Round(rate))))
	row("retries", formatCount(s.retries.Load()))
	w.Write(b.Bytes())
}
