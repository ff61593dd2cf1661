package ingest

import (
	"bufio"
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"
)

// recorder is a lineHandler that keeps what it got; empty lines are in
// lines too, as "".
type recorder struct {
	lines []string
	over  []string // "prefix-len/length"
	cut   []string // "prefix/declared/received"
	blank int
}

func (r *recorder) line(p []byte) { r.lines = append(r.lines, string(p)) }
func (r *recorder) oversized(prefix []byte, n uint64) {
	r.over = append(r.over, fmt.Sprintf("%s/%d", prefix[:min(len(prefix), 4)], n))
}
func (r *recorder) truncated(prefix []byte, declared, received uint64) {
	r.cut = append(r.cut, fmt.Sprintf("%s/%d/%d", prefix, declared, received))
}
func (r *recorder) empty() {
	r.lines = append(r.lines, "")
	r.blank++
}

func TestScanLines(t *testing.T) {
	long := strings.Repeat("x", 40000)
	in := "a\nb\r\n\n" + strings.Repeat("y", 11) + "\n" + long + "\r\n" + "c\r\r\n" + long + "\n" + "d"
	r := &recorder{}
	br := bufio.NewReaderSize(strings.NewReader(in), readerSize(10))
	if err := scanLines(br, 10, r, nil); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(r.lines, "|"), "a|b||c\r|d"; got != want {
		t.Errorf("lines %q, want %q", got, want)
	}
	if got, want := strings.Join(r.over, " "), "yyyy/11 xxxx/40000 xxxx/40000"; got != want {
		t.Errorf("oversized %q, want %q", got, want)
	}
	if r.blank != 1 {
		t.Errorf("empty %d, want 1", r.blank)
	}
}

// TestScanLinesEmptyLines: every empty line is forwarded; only the final
// newline of the stream adds no empty line after it.
func TestScanLinesEmptyLines(t *testing.T) {
	for _, tc := range []struct {
		in    string
		want  []string
		blank int
	}{
		{"", nil, 0},
		{"\n", []string{""}, 1},
		{"\r\n", []string{""}, 1},
		{"a", []string{"a"}, 0},
		{"a\n", []string{"a"}, 0},
		{"a\r\n", []string{"a"}, 0},
		{"a\nb\n", []string{"a", "b"}, 0},
		{"a\n\nb\n", []string{"a", "", "b"}, 1},
		{"a\r\n\r\nb", []string{"a", "", "b"}, 1},
		{"a\n\n", []string{"a", ""}, 1},
		{"\n\n\n", []string{"", "", ""}, 3},
		{"a\n\r", []string{"a", ""}, 1}, // a lone "\r" at EOF is an unterminated empty line
	} {
		r := &recorder{}
		br := bufio.NewReaderSize(strings.NewReader(tc.in), readerSize(10))
		if err := scanLines(br, 10, r, nil); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprintf("%q", r.lines) != fmt.Sprintf("%q", tc.want) || r.blank != tc.blank {
			t.Errorf("%q: lines %q (empty %d), want %q (empty %d)", tc.in, r.lines, r.blank, tc.want, tc.blank)
		}
	}
}

func TestScanLinesOversizedPrefixAndCRAtEOF(t *testing.T) {
	long := strings.Repeat("z", 70000)
	for _, tc := range []struct {
		in   string
		want uint64
	}{{long + "\r\n", 70000}, {long + "\r", 70000}, {long, 70000}, {long + "\n", 70000}} {
		var got []uint64
		var prefixLen int
		h := &funcHandler{over: func(p []byte, n uint64) { got = append(got, n); prefixLen = len(p) }}
		br := bufio.NewReaderSize(strings.NewReader(tc.in), readerSize(100))
		if err := scanLines(br, 100, h, nil); err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0] != tc.want || prefixLen != oversizedPrefix {
			t.Errorf("in len %d: oversized %v prefix %d, want [%d] prefix %d", len(tc.in), got, prefixLen, tc.want, oversizedPrefix)
		}
	}
}

type funcHandler struct {
	ln   func([]byte)
	over func([]byte, uint64)
}

func (f *funcHandler) line(p []byte) {
	if f.ln != nil {
		f.ln(p)
	}
}
func (f *funcHandler) oversized(p []byte, n uint64) {
	if f.over != nil {
		f.over(p, n)
	}
}
func (f *funcHandler) empty() {}

func octet(msg string) string { return fmt.Sprintf("%d %s", len(msg), msg) }

func TestScanSyslogOctetCounting(t *testing.T) {
	big := "<13>" + strings.Repeat("b", 300)
	in := octet("<13>one") + octet("<13>two\nstill two") + "\n" + octet("<13>three\n") + octet(big) + octet("") + octet("\r\n") + octet("<13>four")
	r := &recorder{}
	framing := 0
	br := bufio.NewReaderSize(strings.NewReader(in), readerSize(100))
	if err := scanSyslog(br, 100, r, nil, func(string) { framing++ }); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(r.lines, "|"), "<13>one|<13>two\nstill two|<13>three|||<13>four"; got != want {
		t.Errorf("lines %q, want %q", got, want)
	}
	if got, want := strings.Join(r.over, " "), "<13>/304"; got != want {
		t.Errorf("oversized %q, want %q", got, want)
	}
	if framing != 0 || r.blank != 2 {
		t.Errorf("framing errors %d, empty %d", framing, r.blank)
	}
}

func TestScanSyslogNewlineAndFallback(t *testing.T) {
	r := &recorder{}
	br := bufio.NewReaderSize(strings.NewReader("<13>a\n<14>b\r\n\n<15>c"), readerSize(100))
	if err := scanSyslog(br, 100, r, nil, func(r string) { t.Errorf("framing error %s", r) }); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(r.lines, "|"), "<13>a|<14>b||<15>c"; got != want {
		t.Errorf("newline framing: %q, want %q", got, want)
	}

	r = &recorder{}
	framing := 0
	br = bufio.NewReaderSize(strings.NewReader(octet("<13>ok")+"12x rest of line\n<13>next\n"), readerSize(100))
	if err := scanSyslog(br, 100, r, nil, func(string) { framing++ }); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(r.lines, "|"), "<13>ok|12x rest of line|<13>next"; got != want || framing != 1 {
		t.Errorf("fallback: %q (framing %d), want %q", got, framing, want)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := DefaultConfig()
	if err := ok.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	for name, mut := range map[string]func(*Config){
		"negative batch":    func(c *Config) { c.BatchMaxBytes = -1 },
		"zero linger":       func(c *Config) { c.BatchLinger = 0 },
		"line over batch":   func(c *Config) { c.MaxLineBytes = c.BatchMaxBytes },
		"no connections":    func(c *Config) { c.MaxConnections = 0 },
		"negative per peer": func(c *Config) { c.MaxConnsPerPeer = -1 },
		"negative idle":     func(c *Config) { c.TCPIdleTimeout = -time.Second },
		"negative rcvbuf":   func(c *Config) { c.UDPRcvbuf = -1 },
		"negative body":     func(c *Config) { c.HTTPMaxBodyBytes = -5 },
		"bad format":        func(c *Config) { c.Format = "Not A Token" },
		"bad addr":          func(c *Config) { c.TCPAddr = "nonsense" },
		"same addr":         func(c *Config) { c.TCPAddr, c.SyslogAddr = ":9000", ":9000" },
		"same host addr":    func(c *Config) { c.TCPAddr, c.SyslogAddr = "127.0.0.1:5514", "127.0.0.1:5514" },
		"zero http wait":    func(c *Config) { c.HTTPTimeout = 0 },
		"zero in flight":    func(c *Config) { c.PublishMaxInFlight = 0 },
		"tiny ack timeout":  func(c *Config) { c.PublishAckTimeout = time.Millisecond },
	} {
		c := DefaultConfig()
		mut(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// Port 0 never collides: the kernel picks a free port for each listener.
	for _, addr := range []string{"127.0.0.1:0", ":0", "[::1]:0", "localhost:00"} {
		c := DefaultConfig()
		c.TCPAddr, c.SyslogAddr = addr, addr
		if err := c.Validate(); err != nil {
			t.Errorf("both %q: %v", addr, err)
		}
	}
}

func TestFlags(t *testing.T) {
	var c Config
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	c.RegisterFlags(fs)
	err := fs.Parse([]string{"-ingest.tcp.addr=", "-ingest.batch.max-bytes=1MiB", "-ingest.max-line-bytes=32KiB",
		"-ingest.http.max-body-bytes=128MiB", "-ingest.format=combined", "-ingest.batch.linger=50ms",
		"-ingest.tcp.max-conns-per-peer=0", "-ingest.tcp.idle-timeout=0", "-ingest.syslog.udp-rcvbuf=1MiB"})
	if err != nil {
		t.Fatal(err)
	}
	if c.TCPAddr != "" || c.SyslogAddr != ":5514" || c.BatchMaxBytes != 1<<20 || c.MaxLineBytes != 32<<10 ||
		c.HTTPMaxBodyBytes != 128<<20 || c.Format != "combined" || c.BatchLinger != 50*time.Millisecond || c.MaxConnections != 1024 || c.MaxConnsPerPeer != 0 || c.TCPIdleTimeout != 0 || c.UDPRcvbuf != 1<<20 {
		t.Errorf("parsed %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
	d := DefaultConfig()
	if d.TCPAddr != ":8888" || d.BatchMaxBytes != 960<<10 || d.MaxLineBytes != 64<<10 || d.HTTPMaxBodyBytes != 64<<20 ||
		d.BatchLinger != 20*time.Millisecond || d.HTTPTimeout != 10*time.Second || d.MaxConnsPerPeer != 64 || d.TCPIdleTimeout != 5*time.Minute || d.UDPRcvbuf != 8<<20 {
		t.Errorf("defaults %+v", d)
	}
	if got := sanitizeSource(" My App/1.0 "); got != "my_app_1_0" {
		t.Errorf("sanitize %q", got)
	}
	if got := sanitizeSource(""); got != "http" {
		t.Errorf("sanitize empty %q", got)
	}
}

// TestScanSyslogTruncated: a frame that the end of the stream cuts short,
// even inside its octet count or right after it, is handed on as
// truncated with what arrived, and counted as a framing error; a bad
// count is a framing error of its own reason.
func TestScanSyslogTruncated(t *testing.T) {
	for _, tc := range []struct {
		in, lines, cut, framing string
	}{
		{octet("<13>ok") + "50 <13>cut", "<13>ok", "<13>cut/50/7", "truncated_frame"},
		{octet("<13>ok") + "50 ", "<13>ok", "/50/0", "truncated_frame"},
		{octet("<13>ok") + "12", "<13>ok", "12/0/0", "truncated_frame"},
		{"5 hello3", "hello", "3/0/0", "truncated_frame"},
		{octet("<13>ok") + "\n", "<13>ok", "", ""}, // a trailing newline ends nothing
		{"12x rest\n<13>next\n", "12x rest|<13>next", "", "bad_octet_count"},
		{"999999999 <13>msg", "", "", "truncated_frame"}, // oversized, cut short
	} {
		r := &recorder{}
		var framing []string
		br := bufio.NewReaderSize(strings.NewReader(tc.in), readerSize(100))
		if err := scanSyslog(br, 100, r, nil, func(reason string) { framing = append(framing, reason) }); err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(r.lines, "|"); got != tc.lines {
			t.Errorf("%q: lines %q, want %q", tc.in, got, tc.lines)
		}
		if got := strings.Join(r.cut, " "); got != tc.cut {
			t.Errorf("%q: truncated %q, want %q", tc.in, got, tc.cut)
		}
		if got := strings.Join(framing, " "); got != tc.framing {
			t.Errorf("%q: framing errors %q, want %q", tc.in, got, tc.framing)
		}
	}
}
