package nasty

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode"
)

var fullFlag = flag.String("nasty.full", "auto", "full-size inputs (1M dead letters, a bomb of empty lines at the default cap): true, false or auto (= not under -race and not -short)")

// full reports whether the suite runs every input at full size. Under the
// race detector (CI) the two inputs whose cost is per line, not per byte,
// are scaled down: 1M tiny lines of which 100k (not 2M of which 1M) fail
// to parse, and the line bomb has 16-byte lines (4M of them before the
// cap, not 64M empty ones).
func full(t *testing.T) bool {
	switch *fullFlag {
	case "true":
		return true
	case "false":
		return false
	case "auto":
		return !raceEnabled && !testing.Short()
	}
	t.Fatalf("-nasty.full=%q: want true, false or auto", *fullFlag)
	return false
}

// suite is the main app with default limits and the oracle: what the
// pipeline must have counted so far.
type suite struct {
	p        *proc
	dead     map[string]float64 // dead letters by reason code
	requests uint64             // valid records
	canaries int
}

// expectDead adds n dead letters of reason code to the oracle.
func (s *suite) expectDead(code string, n int) { s.dead[code] += float64(n) }

// settle waits until the parser's dead-letter counters and the query
// stage's totals equal the oracle, failing at once when any goes beyond.
func (s *suite) settle(t *testing.T) {
	t.Helper()
	eventually(t, "dead letters and requests to be counted", func() (bool, string) {
		all := s.p.metrics()
		var wantTotal float64
		for code, want := range s.dead {
			wantTotal += want
			got := sumMetric(all, "logtally_parser_dead_letters_total", `reason="`+code+`"`)
			if got > want {
				t.Fatalf("dead letters %q: %v, more than the %v sent", code, got, want)
			}
			if got < want {
				return false, fmt.Sprintf("dead letters %q: %v of %v", code, got, want)
			}
		}
		if got := sumMetric(all, "logtally_parser_dead_letters_total"); got != wantTotal {
			t.Fatalf("dead letters of all reasons: %v, want %v (%v)", got, wantTotal, s.dead)
		}
		tot := s.p.totals()
		if float64(tot.DeadLetters) > wantTotal || tot.Requests > s.requests {
			t.Fatalf("totals %+v, more than the %v dead letters and %d requests sent", tot, wantTotal, s.requests)
		}
		return float64(tot.DeadLetters) == wantTotal && tot.Requests == s.requests,
			fmt.Sprintf("totals %+v, want %v dead letters and %d requests", tot, wantTotal, s.requests)
	})
}

// canary checks that the process is ready and counts a normal line sent
// over TCP and one sent over HTTP exactly once each.
func (s *suite) canary(t *testing.T) {
	t.Helper()
	if code, body := s.p.get("/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz after the input: %d %v", code, body)
	}
	s.canaries++
	tcpIP := fmt.Sprintf("198.51.100.%d", 2*s.canaries)
	httpIP := fmt.Sprintf("198.51.100.%d", 2*s.canaries+1)
	sendTCP(t, s.p.a.Ingest.TCPAddr(), strings.NewReader(clf(tcpIP, "/canary")+"\n"))
	code, out, err := s.p.post("", strings.NewReader(clf(httpIP, "/canary")+"\n"), nil)
	if err != nil || code != http.StatusOK || out["accepted"] != 1.0 {
		t.Fatalf("canary over HTTP: %d %v %v", code, out, err)
	}
	s.requests += 2
	for _, ip := range []string{tcpIP, httpIP} {
		eventually(t, "the canary "+ip+" to be counted", func() (bool, string) {
			n := s.p.ipCount(ip)
			if n > 1 {
				t.Fatalf("canary %s counted %d times", ip, n)
			}
			return n == 1, fmt.Sprintf("count %d", n)
		})
	}
}

// step runs one nasty input, waits until the pipeline has counted what the
// oracle expects, checks the heap bound and that a normal line is still
// counted, and records the figures.
// The oracle of later steps builds on this one's, so the suite stops at
// the first step that fails.
func (s *suite) step(t *testing.T, name string, heapBound int64, run func(t *testing.T) (input int64, outcome string)) {
	t.Helper()
	ok := t.Run(name, func(t *testing.T) {
		h := watchHeap()
		start := time.Now()
		input, outcome := run(t)
		s.settle(t)
		wall := time.Since(start)
		peak, kept := h.end()
		t.Logf("%s: input %s, peak heap growth %s, kept %s, %s: %s", name, size(input), size(peak), size(kept), wall.Round(time.Millisecond), outcome)
		record(figure{name: name, outcome: outcome, input: input, peakHeap: peak, kept: kept, wall: wall})
		if peak > heapBound {
			t.Errorf("peak heap growth %s, over the bound of %s", size(peak), size(heapBound))
		}
		s.canary(t)
	})
	if !ok {
		t.FailNow()
	}
}

// clf is a combined-format line of ip with the current time.
func clf(ip, path string) string {
	return ip + ` - - [` + time.Now().UTC().Format("02/Jan/2006:15:04:05 -0700") + `] "GET ` + path + ` HTTP/1.1" 200 1 "-" "nasty"`
}

// rfc5424 is a syslog message with the current time whose text holds ip.
func rfc5424(text string) string {
	return "<34>1 " + time.Now().UTC().Format(time.RFC3339) + " host app - - - " + text
}

func octet(msg string) string { return strconv.Itoa(len(msg)) + " " + msg }

// rawPost sends POST /api/v1/ingest over a connection of its own, writing
// body while it waits for the answer: a server that answers early (413)
// and closes is not read to the end. length < 0 sends the body chunked.
// It returns the status, the JSON answer and the body bytes written.
func (p *proc) rawPost(t *testing.T, query string, header map[string]string, body io.Reader, length int64) (int, map[string]any, int64) {
	t.Helper()
	conn := dial(t, p.a.HTTPAddr())
	_ = conn.SetDeadline(time.Now().Add(3 * time.Minute))
	var hdr strings.Builder
	fmt.Fprintf(&hdr, "POST /api/v1/ingest%s HTTP/1.1\r\nHost: nasty\r\n", query)
	if length >= 0 {
		fmt.Fprintf(&hdr, "Content-Length: %d\r\n", length)
	} else {
		hdr.WriteString("Transfer-Encoding: chunked\r\n")
	}
	for k, v := range header {
		fmt.Fprintf(&hdr, "%s: %s\r\n", k, v)
	}
	hdr.WriteString("\r\n")
	if _, err := io.WriteString(conn, hdr.String()); err != nil {
		t.Fatalf("write request header: %v", err)
	}
	var written atomic.Int64
	wrote := make(chan error, 1)
	go func() {
		var w io.Writer = conn
		var cw io.WriteCloser
		if length < 0 {
			cw = httputil.NewChunkedWriter(conn)
			w = cw
		}
		buf := make([]byte, 64*kib)
		for {
			n, err := body.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					wrote <- werr
					return
				}
				written.Add(int64(n))
			}
			if err == io.EOF {
				if cw != nil {
					_ = cw.Close()
					_, _ = io.WriteString(conn, "\r\n")
				}
				wrote <- nil
				return
			}
			if err != nil {
				wrote <- err
				return
			}
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read answer after %s of body: %v", size(written.Load()), err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	_ = conn.Close() // stops the writer if the server did not read to the end
	<-wrote
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("answer %d is not JSON: %q", resp.StatusCode, raw)
	}
	return resp.StatusCode, out, written.Load()
}

// noControl fails if s holds a control character or a line or paragraph
// separator (what could break a log line or a terminal).
func noControl(t *testing.T, what, s string) {
	t.Helper()
	for _, r := range s {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			t.Fatalf("%s holds %U: %q", what, r, s)
		}
	}
}

func TestNasty(t *testing.T) {
	p := startApp(t, "nasty", newConfig(t))
	s := &suite{p: p, dead: map[string]float64{}}
	isFull := full(t)
	t.Logf("full-size inputs: %v (race detector: %v)", isFull, raceEnabled)
	s.canary(t)
	tcp, syslogTCP, syslogUDP := p.a.Ingest.TCPAddr(), p.a.Ingest.SyslogTCPAddr(), p.a.Ingest.SyslogUDPAddr()
	// Heap bounds: a refused body is held up to the cap (64 MiB), encoded;
	// a body of short lines encodes to up to twice its size.
	const (
		capBound  = 128 * mib // 2x the cap
		lineBound = 192 * mib // 3x the cap
		smallStep = 64 * mib  // inputs of a few KiB, or streamed ones
	)

	// An HTTP body must be refused once over -ingest.http.max-body-bytes
	// (64 MiB): the server stops reading there and stores nothing.
	nothingStoredOverHTTP := func(t *testing.T, run func() (int, map[string]any, int64), wantRead int64) string {
		before := p.metrics()
		code, out, written := run()
		after := p.metrics()
		if code != http.StatusRequestEntityTooLarge || out["error"] != "request body too large" {
			t.Fatalf("answer %d %v, want 413 with a message", code, out)
		}
		if written > wantRead {
			t.Fatalf("the server took %s of the body before answering, want at most %s", size(written), size(wantRead))
		}
		for _, m := range []string{"logtally_ingest_lines_total", "logtally_ingest_batches_published_total", "logtally_ingest_oversized_lines_total"} {
			if b, a := sumMetric(before, m, `source="http"`), sumMetric(after, m, `source="http"`); a != b {
				t.Fatalf("%s{source=http} went from %v to %v: the refused body was stored", m, b, a)
			}
		}
		if d := sumMetric(after, "logtally_ingest_http_requests_total", `code="413"`) - sumMetric(before, "logtally_ingest_http_requests_total", `code="413"`); d != 1 {
			t.Fatalf("http_requests_total{code=413} grew by %v", d)
		}
		return fmt.Sprintf("413 %q after the server took %s of the body", out["error"], size(written))
	}

	s.step(t, "http 1 GiB plain body, streamed", capBound, func(t *testing.T) (int64, string) {
		line := clf("203.0.113.250", "/streamed-"+strings.Repeat("x", 20)) + "\n"
		outcome := nothingStoredOverHTTP(t, func() (int, map[string]any, int64) {
			return p.rawPost(t, "", nil, repeatN(line, gib), gib)
		}, 256*mib)
		if n := p.ipCount("203.0.113.250"); n != 0 {
			t.Fatalf("lines of the refused body were counted: %d", n)
		}
		return gib, outcome
	})

	s.step(t, "http gzip bomb, 1 GiB of NUL bytes", smallStep, func(t *testing.T) (int64, string) {
		bomb := newGzipBomb("\x00", gib)
		outcome := nothingStoredOverHTTP(t, func() (int, map[string]any, int64) {
			return p.rawPost(t, "", map[string]string{"Content-Encoding": "gzip"}, bomb, -1)
		}, 64*mib)
		return gib, outcome + " (compressed)"
	})

	// The bomb of short lines is the costly one: 64 MiB of "\n" before the
	// cap are 64M empty lines. Scaled down, it has 16-byte lines (4M of
	// them; TestConnectionLimit sends the "\n" bomb against a 4 MiB cap).
	pattern := "\n"
	if !isFull {
		pattern = "0123456789abcde\n"
	}
	s.step(t, fmt.Sprintf("http gzip bomb, 1 GiB of %q lines", pattern), lineBound, func(t *testing.T) (int64, string) {
		bomb := newGzipBomb(pattern, gib)
		outcome := nothingStoredOverHTTP(t, func() (int, map[string]any, int64) {
			return p.rawPost(t, "?source=bomb", map[string]string{"Content-Encoding": "gzip"}, bomb, -1)
		}, 64*mib)
		return gib, outcome + " (compressed)"
	})

	// A 10 MiB line is one oversized entry: a dead letter with its first
	// KiB and its length.
	checkTooLong := func(t *testing.T, source string, n int) {
		items, _ := p.deadLetters(1)
		if len(items) != 1 {
			t.Fatalf("no dead letter")
		}
		d := items[0]
		if d.Reason != fmt.Sprintf("line too long: %d bytes", n) || d.Length != uint64(n) || !d.Truncated || d.Source != source || !strings.HasPrefix(d.Line, "LLLL") {
			t.Fatalf("dead letter %+v", d)
		}
	}
	s.step(t, "tcp 10 MiB line", smallStep, func(t *testing.T) (int64, string) {
		const n = 10 * mib
		sendTCP(t, tcp, io.MultiReader(repeatN("L", n), strings.NewReader("\n"+clf("203.0.113.1", "/after-long-line")+"\n")))
		s.expectDead("line_too_long", 1)
		s.requests++
		s.settle(t)
		checkTooLong(t, "tcp", n)
		if c := p.ipCount("203.0.113.1"); c != 1 {
			t.Fatalf("the line after the long one was counted %d times", c)
		}
		return n, `dead letter "line too long: 10485760 bytes"; the next line counted`
	})
	s.step(t, "http 10 MiB line", smallStep, func(t *testing.T) (int64, string) {
		const n = 10 * mib
		code, out, _ := p.rawPost(t, "", nil, repeatN("L", n), n)
		if code != http.StatusOK || out["accepted"] != 0.0 || out["oversized"] != 1.0 {
			t.Fatalf("answer %d %v, want 200 with one oversized line", code, out)
		}
		s.expectDead("line_too_long", 1)
		s.settle(t)
		checkTooLong(t, "http", n)
		return n, `200 {"oversized":1}; dead letter "line too long: 10485760 bytes"`
	})

	// A million tiny lines over one connection: every bad one is a dead
	// letter of its own (the parser publishes one message per bad line),
	// every good one a record. The bad ones come first, so that raw
	// batches hold nothing else (87k dead letters per batch).
	tinyLines, badEvery := 1_000_000, 10
	if isFull {
		tinyLines, badEvery = 2_000_000, 2
	}
	// Each dead letter is a JetStream message with a Nats-Msg-Id, which
	// the server remembers for the duplicate window (2 minutes): about
	// 130 bytes per dead letter stay in use that long, twice that at the
	// peak (garbage not yet collected).
	tinyBound := int64(256*mib + 384*(tinyLines/badEvery))
	s.step(t, fmt.Sprintf("tcp %d tiny lines, %d bad", tinyLines, tinyLines/badEvery), tinyBound, func(t *testing.T) (int64, string) {
		bad, good := tinyLines/badEvery, tinyLines-tinyLines/badEvery
		before := p.metric("logtally_ingest_lines_total", `source="tcp"`)
		n := sendTCP(t, tcp, io.MultiReader(repeatN("x\n", int64(2*bad)), repeatN("198.18.0.1\n", int64(11*good))))
		s.expectDead("no_client_ip", bad)
		s.requests += uint64(good)
		s.settle(t)
		if got := p.metric("logtally_ingest_lines_total", `source="tcp"`) - before; got != float64(tinyLines) {
			t.Fatalf("ingest counted %v lines, want %d", got, tinyLines)
		}
		if c := p.ipCount("198.18.0.1"); c != uint64(good) {
			t.Fatalf("198.18.0.1 counted %d times, want %d", c, good)
		}
		return n, fmt.Sprintf("%d dead letters \"no client IP\", %d records, exact", bad, good)
	})

	// NUL bytes and invalid UTF-8 are dead letters with the offset.
	s.step(t, "NUL bytes and invalid UTF-8", smallStep, func(t *testing.T) (int64, string) {
		bad := []string{
			clf("203.0.113.2", "/nul") + "\x00tail",
			"\x00\x00\x00",
			"\x00" + clf("203.0.113.2", "/nul"),
			clf("203.0.113.2", "/utf8") + "\xff\xfe",
			"\xc0\xaf overlong " + clf("203.0.113.2", "/utf8"),
			"\xed\xa0\x80 surrogate 203.0.113.2",
			"\xf4\x90\x80\x80 beyond U+10FFFF 203.0.113.2",
		}
		body := strings.Join(bad, "\n") + "\n"
		n := sendTCP(t, tcp, strings.NewReader(body))
		code, out, err := p.post("", strings.NewReader(body), nil)
		if err != nil || code != http.StatusOK || out["accepted"] != float64(len(bad)) {
			t.Fatalf("HTTP: %d %v %v", code, out, err)
		}
		s.expectDead("binary", 6)
		s.expectDead("invalid_utf8", 8)
		s.settle(t)
		if c := p.ipCount("203.0.113.2"); c != 0 {
			t.Fatalf("203.0.113.2 counted %d times from broken lines", c)
		}
		items, _ := p.deadLetters(2 * len(bad))
		for _, d := range items {
			noControl(t, "dead letter line", d.Line)
			noControl(t, "dead letter reason", d.Reason)
			if !strings.Contains(d.Reason, "at byte ") {
				t.Fatalf("reason without an offset: %q", d.Reason)
			}
		}
		return 2 * n, `dead letters "binary data (NUL byte) at byte N" and "invalid UTF-8 at byte N"`
	})

	// A line can hold a carriage return or, in a syslog frame or datagram,
	// a newline; JSON escapes one. None of these may forge a second record:
	// each line gives one record (its first address) or one dead letter.
	s.step(t, "log injection: CR, LF inside a frame, escaped newlines", smallStep, func(t *testing.T) (int64, string) {
		forged := []string{"192.0.2.101", "192.0.2.102", "192.0.2.103", "192.0.2.104", "192.0.2.105"}
		real := []string{"192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.5"}
		var sent int64
		sent += sendTCP(t, tcp, strings.NewReader(clf(real[0], "/a")+"\r"+clf(forged[0], "/forged")+"\n"))
		ua, _ := json.Marshal("x\n" + clf(forged[1], "/forged") + "\r\n")
		jsonLine := `{"remote_addr":"` + real[1] + `","user_agent":` + string(ua) + "}\n"
		httpBody := clf(real[2], "/b") + "\r" + clf(forged[2], "/forged") + "\r\n" + jsonLine
		code, out, err := p.post("", strings.NewReader(httpBody), nil)
		if err != nil || code != http.StatusOK || out["accepted"] != 2.0 {
			t.Fatalf("HTTP: %d %v %v", code, out, err)
		}
		sent += int64(len(httpBody))
		frame := octet(rfc5424("hello from " + real[3] + "\n" + clf(forged[3], "/forged") + "\n" + clf(forged[3], "/forged")))
		sent += sendTCP(t, syslogTCP, strings.NewReader(frame))
		uc, err := net.Dial("udp", syslogUDP.String())
		if err != nil {
			t.Fatal(err)
		}
		dgram := rfc5424("hello from " + real[4] + "\n" + clf(forged[4], "/forged"))
		if _, err := io.WriteString(uc, dgram); err != nil {
			t.Fatal(err)
		}
		uc.Close()
		sent += int64(len(dgram))
		s.requests += uint64(len(real))

		// Dead letters must show control characters escaped: a line
		// without an address, full of terminal escapes and separators,
		// sent with a source name holding CR LF.
		evil := "no address\r\x1b[2J\x1b]0;pwned\x07 \u2028 next\tline\x7f\\"
		code, out, err = p.post("?source=evil%0D%0Asource", strings.NewReader(evil+"\n"), nil)
		if err != nil || code != http.StatusOK {
			t.Fatalf("HTTP: %d %v %v", code, out, err)
		}
		sent += int64(len(evil))
		s.expectDead("no_client_ip", 1)
		s.settle(t)
		for _, ip := range real {
			if c := p.ipCount(ip); c != 1 {
				t.Fatalf("%s counted %d times, want 1", ip, c)
			}
		}
		for _, ip := range forged {
			if c := p.ipCount(ip); c != 0 {
				t.Fatalf("forged record of %s counted %d times", ip, c)
			}
		}
		if d := p.metric("logtally_ingest_udp_dropped_total"); d != 0 {
			t.Fatalf("%v datagrams dropped", d)
		}
		items, raw := p.deadLetters(1)
		d := items[0]
		if d.Source != "evil__source" {
			t.Fatalf("dead letter source %q, want the sanitized evil__source", d.Source)
		}
		noControl(t, "dead letter line", d.Line)
		noControl(t, "dead letter reason", d.Reason)
		noControl(t, "dead letter source", d.Source)
		if want := `no address\r\x1b[2J\x1b]0;pwned\x07 \u2028 next\tline\x7f\\`; d.Line != want {
			t.Fatalf("dead letter line %q, want %q", d.Line, want)
		}
		if !strings.HasPrefix(d.Reason, "no client IP in line \"") {
			t.Fatalf("reason %q", d.Reason)
		}
		if strings.ContainsAny(strings.TrimSuffix(string(raw), "\n"), "\r\n\x1b\x07") {
			t.Fatalf("the dead-letter answer holds raw control characters: %q", raw)
		}
		return sent, "one record per line, none for the forged lines; dead letter shown escaped"
	})

	// Octet counts: absurd, too long to be a count, negative, truncated.
	s.step(t, "syslog octet counts", smallStep, func(t *testing.T) (int64, string) {
		badBefore := p.metric("logtally_ingest_syslog_framing_errors_total", `reason="bad_octet_count"`)
		cutBefore := p.metric("logtally_ingest_syslog_framing_errors_total", `reason="truncated_frame"`)
		var sent int64
		// 20 digits: no count; the connection falls back to newline framing.
		sent += sendTCP(t, syslogTCP, strings.NewReader("99999999999999999999 "+rfc5424("hello 203.0.113.3")+"\n"+rfc5424("next 203.0.113.4")+"\n"))
		// 10 digits (more than 9): the same.
		sent += sendTCP(t, syslogTCP, strings.NewReader("2147483648 x\n"))
		// 999,999,999 bytes announced, 70 sent: the frame is over the line
		// limit and cut short; it must leave a dead letter, not vanish.
		sent += sendTCP(t, syslogTCP, strings.NewReader("999999999 "+rfc5424("hello 203.0.113.5")))
		// A frame one byte over the line limit, then a normal frame.
		big := rfc5424("big 203.0.113.6 " + strings.Repeat("b", 64*kib))
		sent += sendTCP(t, syslogTCP, strings.NewReader(octet(big)+octet(rfc5424("after 203.0.113.7"))))
		// A negative count: not octet counting at all.
		sent += sendTCP(t, syslogTCP, strings.NewReader("-1 "+rfc5424("minus 203.0.113.8")+"\n"))
		// A frame cut short by the end of the connection: what arrived is
		// not the message sent (here it parses, but a cut address would be
		// another address), so it is a dead letter, not a count.
		sent += sendTCP(t, syslogTCP, strings.NewReader("500 "+rfc5424("cut short 203.0.113.9")))
		s.expectDead("bad_syslog", 3)      // the 20-digit, 10-digit and negative lines
		s.expectDead("line_too_long", 2)   // 999999999 and the 64 KiB frame
		s.expectDead("truncated_frame", 1) // the 500-byte frame of 50 bytes
		s.requests += 2                    // 203.0.113.4 and .7
		s.settle(t)
		if d := p.metric("logtally_ingest_syslog_framing_errors_total", `reason="bad_octet_count"`) - badBefore; d != 2 {
			t.Fatalf("bad_octet_count framing errors grew by %v, want 2", d)
		}
		// 999999999 (over the limit, so a line too long) and 500 bytes.
		if d := p.metric("logtally_ingest_syslog_framing_errors_total", `reason="truncated_frame"`) - cutBefore; d != 2 {
			t.Fatalf("truncated_frame framing errors grew by %v, want 2", d)
		}
		for ip, want := range map[string]uint64{"203.0.113.3": 0, "203.0.113.4": 1, "203.0.113.5": 0, "203.0.113.6": 0, "203.0.113.7": 1, "203.0.113.8": 0, "203.0.113.9": 0} {
			if c := p.ipCount(ip); c != want {
				t.Fatalf("%s counted %d times, want %d", ip, c, want)
			}
		}
		items, _ := p.deadLetters(10)
		var huge bool
		for _, d := range items {
			if d.Reason == "line too long: 999999999 bytes" && d.Length == 999999999 && strings.Contains(d.Line, "hello 203.0.113.5") {
				huge = true
			}
		}
		var cut bool
		for _, d := range items {
			if strings.HasPrefix(d.Reason, "truncated frame: the connection ended after ") && strings.HasSuffix(d.Reason, " of the 500 bytes its octet count declared") &&
				strings.Contains(d.Line, "cut short 203.0.113.9") {
				cut = true
			}
		}
		if !huge || !cut {
			t.Fatalf("no dead letter for the 999999999-byte frame (%v) or the cut 500-byte frame (%v): %+v", huge, cut, items)
		}
		return sent, "2 bad octet counts + 3 bad_syslog, 2 line_too_long (declared 999999999 bytes), 1 truncated_frame"
	})

	// IPv6 zones name an interface of the logging host: dropped, so the
	// address counts as itself; an empty zone is not an address.
	s.step(t, "IPv6 zones in lines and queries", smallStep, func(t *testing.T) (int64, string) {
		lines := clf("fe80::1%eth0", "/zone") + "\n" + clf("[fe80::1%25eth0]", "/zone") + "\n" + clf("fe80::1", "/zone") + "\n" +
			clf("fe80::2%"+strings.Repeat("z", 200), "/longzone") + "\n" + clf("fe80::3%", "/emptyzone") + "\n"
		n := sendTCP(t, tcp, strings.NewReader(lines))
		s.requests += 3
		s.expectDead("no_client_ip", 2) // the 200-byte zone and the empty zone
		s.settle(t)
		for _, tc := range []struct {
			path, ip string
			count    float64
		}{
			{"fe80::1", "fe80::1", 3}, {"fe80::1%25eth0", "fe80::1", 3}, {"fe80::1%25lo", "fe80::1", 3},
			{"fe80::2", "fe80::2", 0}, {"fe80::3", "fe80::3", 0},
		} {
			code, out := p.get("/api/v1/ips/" + tc.path + "?last=1h")
			if code != http.StatusOK || out["count"] != tc.count || out["ip"] != tc.ip {
				t.Fatalf("/api/v1/ips/%s: %d %v, want ip %s count %v", tc.path, code, out, tc.ip, tc.count)
			}
		}
		code, out := p.get("/api/v1/top?cidr=fe80::/64&last=1h&n=5")
		items, _ := out["items"].([]any)
		if code != http.StatusOK || len(items) != 1 {
			t.Fatalf("top in fe80::/64: %d %v", code, out)
		}
		if it, _ := items[0].(map[string]any); it["ip"] != "fe80::1" || it["count"] != 3.0 || it["requests"] != 3.0 {
			t.Fatalf("top in fe80::/64: %d %v, want fe80::1 with 3 requests", code, out)
		}
		return n, "zone dropped: fe80::1%eth0 counts as fe80::1; over-long or empty zone: dead letter"
	})

	s.step(t, "query parameters", smallStep, func(t *testing.T) (int64, string) {
		old := time.Now().UTC().AddDate(-100, 0, 0).Truncate(time.Hour).Format(time.RFC3339)
		now := time.Now().UTC().Truncate(time.Minute).Format(time.RFC3339)
		later := time.Now().UTC().Truncate(time.Minute).Add(time.Hour).Format(time.RFC3339)
		long := strings.Repeat("9", 100*kib)
		for _, tc := range []struct{ path, want string }{
			{"/api/v1/top?n=1e18", "is not a whole number"},
			{"/api/v1/top?n=1000000000000000000", "n must be between 1 and 1000"},
			{"/api/v1/top?n=99999999999999999999999", "is not a whole number"},
			{"/api/v1/top?n=-1", "n must be between 1 and 1000"},
			{"/api/v1/top?n=0", "n must be between 1 and 1000"},
			{"/api/v1/top?n=1001", "n must be between 1 and 1000"},
			{"/api/v1/top?n=%00", "is not a whole number"},
			{"/api/v1/top?n=" + long, "is not a whole number"},
			{"/api/v1/top?cidr=10.0.0.0/8&n=1e18", "is not a whole number"},
			{"/api/v1/dead-letters?n=1e18", "is not a whole number"},
			{"/api/v1/dead-letters?n=-1", "n must be between 1 and 500"},
			{"/api/v1/watch/top?n=1000000000000000000", "n must be between 1 and 1000"},
			{"/api/v1/top?last=876000h", "longer than the maximum of 400d"},
			{"/api/v1/top?last=36500d", "longer than the maximum of 400d"},
			{"/api/v1/top?last=9999999999999999999d", "is not a duration"},
			{"/api/v1/top?last=-5m", "must be a positive whole number"},
			{"/api/v1/top?last=0s", "must be a positive whole number"},
			{"/api/v1/top?last=90s", "must be a positive whole number"},
			{"/api/v1/totals?from=" + old + "&to=" + now, "longer than the maximum of 400d"},
			{"/api/v1/totals?from=0001-01-01T00:00:00Z&to=9999-12-31T23:59:00Z", "from and to"},
			{"/api/v1/totals?from=1970-01-01T00:00:00Z&to=9999-12-31T23:59:00Z", "longer than the maximum of 400d"},
			{"/api/v1/top?from=" + later + "&to=" + now, "must be after from"},
			{"/api/v1/top?from=" + now + "&to=" + now, "must be after from"},
			{"/api/v1/top?from=" + now, "from and to must be given together"},
			{"/api/v1/top?from=2026-11-24T10:00:30Z&to=2026-11-24T11:00:00Z", "not aligned"},
			{"/api/v1/top?from=yesterday&to=today", "is not an RFC 3339 time"},
			{"/api/v1/top?last=5m&from=" + now + "&to=" + later, "either last or from and to"},
			{"/api/v1/series?last=400d&step=1m", "more than the maximum of 10000"},
			{"/api/v1/series?last=1h&step=0s", "must be a positive multiple"},
			{"/api/v1/series?last=1h&step=1s", "must be a positive multiple"},
			{"/api/v1/series?last=1h&step=106751991d", "is not a duration"},
			{"/api/v1/ips/fe80::1%25?last=1h", "is not an IP address"},
			{"/api/v1/ips/not-an-ip?last=1h", "is not an IP address"},
			{"/api/v1/ips/1.2.3.4.5?last=1h", "is not an IP address"},
			{"/api/v1/ips/" + long, "is not an IP address"},
			{"/api/v1/top?cidr=fe80::1%25eth0/64", "is not a prefix"},
			{"/api/v1/top?cidr=", "cidr is empty"},
			{"/api/v1/top?cidr=garbage", "is not a prefix"},
			{"/api/v1/top?cidr=10.0.0.0/33", "is not a prefix"},
			{"/api/v1/top?cidr=::/129", "is not a prefix"},
			{"/api/v1/top?cidr=10.0.0.0/-1", "is not a prefix"},
			{"/api/v1/top?cidr=999.0.0.0/8", "is not a prefix"},
			{"/api/v1/top?cidr=10.0.0.0/8/8", "is not a prefix"},
			{"/api/v1/top?cidr=10.0.0.0/08", "is not a prefix"},
			{"/api/v1/top?cidr=10.0.0.0", "is not a prefix"},
			{"/api/v1/top?cidr=%00/0", "is not a prefix"},
			{"/api/v1/top?cidr=" + long + "/8", "is not a prefix"},
			{"/api/v1/watch/top?cidr=10.0.0.0/33", "is not a prefix"},
			{"/api/v1/watch/overview?last=400d&step=1m", "more than the maximum"},
		} {
			code, raw := p.getRaw(tc.path)
			var out map[string]string
			if err := json.Unmarshal(raw, &out); err != nil || code != http.StatusBadRequest || !strings.Contains(out["error"], tc.want) {
				t.Errorf("%.120s: %d %.300s, want 400 with %q", tc.path, code, raw, tc.want)
			}
		}
		// Absurd but valid: the widest range allowed and the largest n.
		for _, path := range []string{"/api/v1/top?last=400d&n=1000", "/api/v1/totals?last=400d", "/api/v1/top?cidr=::/0&last=400d&n=1000", "/api/v1/top?cidr=0.0.0.0/0&last=1h&n=1"} {
			if code, raw := p.getRaw(path); code != http.StatusOK {
				t.Errorf("%s: %d %s", path, code, raw)
			}
		}
		before := p.metric("logtally_query_requests_total", `transport="grpc"`, `outcome="invalid"`)
		invalid := grpcChecks(t, p)
		if n := p.metric("logtally_query_requests_total", `outcome="error"`); n != 0 {
			t.Fatalf("%v queries ended in an internal error", n)
		}
		// A client's mistake is counted as one, not as a server error.
		if n := p.metric("logtally_query_requests_total", `transport="grpc"`, `outcome="invalid"`) - before; n != float64(invalid) {
			t.Fatalf("%v gRPC queries counted as invalid, want %d", n, invalid)
		}
		return 0, "400 with a message for each; gRPC InvalidArgument"
	})
}
