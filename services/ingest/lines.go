package ingest

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// Framing. Lines are cut from a bufio.Reader whose buffer holds at least
// max-line-bytes plus a CRLF, so every line that is not oversized is
// returned by one ReadSlice without copying; longer lines are skipped to
// their newline while only their first KiB is kept.
//
// Empty lines are not skipped: they go to the handler's empty method and
// travel as empty entries of RawBatch.lines, which the parser turns into
// dead letters (reason "empty line"). Only the final newline of a stream or
// body ends the last line and adds no empty line after it: "a\nb\n" is two
// lines, "a\n\nb\n" three with an empty one in the middle.

// readerSize is the bufio buffer size for a line limit.
func readerSize(maxLine int) int { return max(maxLine+2, 16<<10) }

// trimEOL removes a trailing "\n" and then one trailing "\r".
func trimEOL(p []byte) []byte {
	if n := len(p); n > 0 && p[n-1] == '\n' {
		p = p[:n-1]
	}
	if n := len(p); n > 0 && p[n-1] == '\r' {
		p = p[:n-1]
	}
	return p
}

// trimNewlines removes every trailing '\n' and '\r' (datagrams, frames).
func trimNewlines(p []byte) []byte {
	return bytes.TrimRight(p, "\r\n")
}

// emit hands one line to h, classifying it as empty, normal or oversized;
// an empty line is forwarded (h.empty), never dropped.
func emit(h lineHandler, p []byte, maxLine int) {
	switch {
	case len(p) == 0:
		h.empty()
	case len(p) > maxLine:
		h.oversized(p[:min(len(p), oversizedPrefix)], uint64(len(p)))
	default:
		h.line(p)
	}
}

// scanLines cuts newline-delimited lines until the reader ends. idle, if
// set, runs whenever the next read would have to wait for the network, so
// that the caller can pass on what it collected before blocking. At io.EOF
// a final line without newline is kept (even one that is only "\r", as an
// empty line; nothing after a final newline is no line) and scanLines
// returns nil; on any other read error an unfinished line is dropped and
// the error returned.
func scanLines(br *bufio.Reader, maxLine int, h lineHandler, idle func()) error {
	for {
		if idle != nil && br.Buffered() == 0 {
			idle()
		}
		if err := readLine(br, maxLine, nil, h); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// readLine reads one line ending in '\n' and emits it. head holds bytes of
// the line that the caller consumed already (a few bytes at most). It
// returns io.EOF after emitting a final unterminated line.
func readLine(br *bufio.Reader, maxLine int, head []byte, h lineHandler) error {
	p, err := br.ReadSlice('\n')
	if len(head) > 0 && (err == nil || err == io.EOF) {
		p = append(append([]byte(nil), head...), p...)
	}
	switch {
	case err == nil:
		emit(h, trimEOL(p), maxLine)
		return nil
	case errors.Is(err, bufio.ErrBufferFull):
		prefix := append(append(make([]byte, 0, oversizedPrefix), head...), p[:min(len(p), oversizedPrefix-min(len(head), oversizedPrefix))]...)
		n, err := skipLine(br, uint64(len(head)+len(p)), p[len(p)-1])
		h.oversized(prefix, n)
		return err
	case errors.Is(err, io.EOF):
		if len(p) > 0 {
			emit(h, trimEOL(p), maxLine)
		}
		return io.EOF
	default:
		return err
	}
}

// skipLine discards the rest of an oversized line of which n bytes were
// read (the last being last) and returns its length without terminator.
func skipLine(br *bufio.Reader, n uint64, last byte) (uint64, error) {
	for {
		p, err := br.ReadSlice('\n')
		n += uint64(len(p))
		if len(p) > 0 {
			if err == nil {
				n-- // '\n'
				prev := last
				if len(p) > 1 {
					prev = p[len(p)-2]
				}
				if prev == '\r' {
					n--
				}
				return n, nil
			}
			last = p[len(p)-1]
		}
		if err == nil || errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if errors.Is(err, io.EOF) && last == '\r' {
			n--
		}
		return n, err
	}
}

// frameHandler takes what scanSyslog cuts from an octet-counted stream:
// lines, and frames that the end of the connection cut short.
type frameHandler interface {
	lineHandler
	// truncated takes a frame of which only received of the declared
	// bytes arrived before the end of the connection (declared is 0 when
	// the connection ended inside the octet count); prefix is the first
	// KiB at most of what arrived (the count's digits in that case). It
	// travels as an oversized entry marked truncated, which the parser
	// dead-letters (reason truncated_frame).
	truncated(prefix []byte, declared, received uint64)
}

// Reasons of syslog framing errors (logtally_ingest_syslog_framing_errors_total).
const (
	framingBadCount  = "bad_octet_count"
	framingTruncated = "truncated_frame"
)

// scanSyslog frames syslog over TCP (RFC 6587). The first byte of the
// connection selects the framing: a digit means octet counting
// ("<len> <msg>"), anything else (normally '<') newline-delimited
// (non-transparent) framing. An octet-counted stream whose next frame has no
// valid length is read as newline-delimited from there on
// (onFramingError(framingBadCount) is called once). A frame that the end of
// the stream cuts short, even inside its count, goes to h.truncated (and
// onFramingError(framingTruncated)); one longer than maxLine is oversized
// however much of it arrived. Nothing that arrived is dropped silently.
func scanSyslog(br *bufio.Reader, maxLine int, h frameHandler, idle func(), onFramingError func(reason string)) error {
	if idle != nil && br.Buffered() == 0 {
		idle()
	}
	first, err := br.Peek(1)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return err
	}
	if first[0] < '0' || first[0] > '9' {
		return scanLines(br, maxLine, h, idle)
	}
	for {
		if idle != nil && br.Buffered() == 0 {
			idle()
		}
		head, n, err := readOctetCount(br)
		if err != nil {
			if errors.Is(err, io.EOF) {
				if len(head) > 0 {
					// The connection ended inside an octet count.
					onFramingError(framingTruncated)
					h.truncated(head, 0, 0)
				}
				return nil
			}
			if !errors.Is(err, errBadFrame) {
				return err
			}
			onFramingError(framingBadCount)
			if err := readLine(br, maxLine, head, h); err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			return ignoreEOF(scanLines(br, maxLine, h, idle))
		}
		if err := readFrame(br, n, maxLine, h); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				onFramingError(framingTruncated)
			}
			return ignoreEOF(err)
		}
	}
}

var errBadFrame = errors.New("bad octet count")

func ignoreEOF(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return nil
	}
	return err
}

// readOctetCount reads "<digits> " and returns the count. Newlines and
// spaces before the count are skipped (some senders end frames with '\n').
// On errBadFrame, head holds the bytes consumed of the frame.
func readOctetCount(br *bufio.Reader) (head []byte, n int, err error) {
	for {
		c, err := br.ReadByte()
		if err != nil {
			return nil, 0, err
		}
		if c != '\n' && c != '\r' && c != ' ' {
			if err := br.UnreadByte(); err != nil {
				return nil, 0, err
			}
			break
		}
	}
	for digits := 0; ; digits++ {
		c, err := br.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return head, 0, io.EOF
			}
			return head, 0, err
		}
		switch {
		case c >= '0' && c <= '9' && digits < 9:
			head = append(head, c)
			n = n*10 + int(c-'0')
		case c == ' ' && digits > 0:
			return head, n, nil
		default:
			if c == '\n' {
				if err := br.UnreadByte(); err != nil {
					return head, 0, err
				}
			} else {
				head = append(head, c)
			}
			return head, 0, errBadFrame
		}
	}
}

// readFrame reads an n-byte octet-counted message and emits it without
// trailing newlines; a newline inside the message stays. An empty frame
// ("0 ", or only newlines) is emitted as an empty line. A frame over
// maxLine is emitted as oversized (with the length its count declares) as
// soon as its prefix is read, before the rest is skipped; a frame that the
// end of the stream cuts short goes to h.truncated with what arrived: unlike
// an unterminated last line of newline framing, it is known to be
// incomplete, and what arrived of it may say something else than the
// message sent (a cut address is another address). Neither is dropped
// silently (say "999999999 <13>msg" and EOF, or "500 <13>msg" and EOF). At
// the end of the stream it returns io.EOF or io.ErrUnexpectedEOF.
func readFrame(br *bufio.Reader, n, maxLine int, h frameHandler) error {
	if n > maxLine {
		prefix := make([]byte, min(n, oversizedPrefix))
		k, err := io.ReadFull(br, prefix)
		if err == nil || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			h.oversized(prefix[:k], uint64(n))
		}
		if err != nil {
			return err
		}
		_, err = br.Discard(n - k)
		return err
	}
	p, err := br.Peek(n)
	if err != nil {
		if errors.Is(err, io.EOF) {
			h.truncated(p[:min(len(p), oversizedPrefix)], uint64(n), uint64(len(p)))
		}
		return err
	}
	emit(h, trimNewlines(p), maxLine)
	_, err = br.Discard(n)
	return err
}
