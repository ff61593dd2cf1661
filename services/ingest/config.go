package ingest

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// batchOverhead is the room a RawBatch needs besides its lines: source,
// peer, format and time fields.
const batchOverhead = 256

// oversizedPrefix is how much of an oversized line travels to the parser.
const oversizedPrefix = 1024

// Config of the ingest stage.
type Config struct {
	// TCPAddr is the newline-delimited line listener; empty disables it.
	TCPAddr string `yaml:"tcp_addr"`
	// SyslogAddr is the syslog listener, UDP and TCP on the same port;
	// empty disables both.
	SyslogAddr string `yaml:"syslog_addr"`
	// UDPRcvbuf is the receive buffer of the syslog UDP socket (0: the
	// system default).
	UDPRcvbuf int `yaml:"udp_rcvbuf"`
	// BatchMaxBytes bounds the encoded size of one RawBatch message.
	BatchMaxBytes int `yaml:"batch_max_bytes"`
	// BatchLinger is how long a batch waits for more lines after its first.
	BatchLinger time.Duration `yaml:"batch_linger"`
	// MaxLineBytes is the longest line kept whole; longer lines travel as
	// an oversized entry (1 KiB prefix and the length).
	MaxLineBytes int `yaml:"max_line_bytes"`
	// MaxConnections is the limit of open connections per TCP listener; at
	// the limit the listener stops accepting (new senders wait in the
	// kernel's accept queue).
	MaxConnections int `yaml:"max_connections"`
	// TCPIdleTimeout closes a TCP connection whose peer sent nothing for
	// this long (0: never); what it had sent is kept.
	TCPIdleTimeout time.Duration `yaml:"tcp_idle_timeout"`
	// MaxConnsPerPeer is the limit of open connections per peer IP address
	// and TCP listener (0: none); more are refused at once.
	MaxConnsPerPeer int `yaml:"max_conns_per_peer"`
	// HTTPMaxBodyBytes bounds an HTTP body after decompression.
	HTTPMaxBodyBytes int64 `yaml:"http_max_body_bytes"`
	// HTTPMaxConcurrent bounds the HTTP ingest requests served at once;
	// each may hold up to about twice HTTPMaxBodyBytes while it is read.
	HTTPMaxConcurrent int `yaml:"http_max_concurrent"`
	// HTTPTimeout is how long an HTTP ingest waits for JetStream to
	// acknowledge its batches before answering 503.
	HTTPTimeout time.Duration `yaml:"http_timeout"`
	// Format is the fixed format of the TCP line listener ("" = detect).
	Format string `yaml:"format"`
	// PublishMaxInFlight bounds the unacknowledged batches per source.
	PublishMaxInFlight int `yaml:"publish_max_in_flight"`
	// PublishAckTimeout is how long one publish attempt waits for its ack
	// before the batch is sent again (with the same Nats-Msg-Id).
	PublishAckTimeout time.Duration `yaml:"publish_ack_timeout"`
	// Compress is the codec of raw batches on the stream: s2 or none.
	Compress string `yaml:"compress"`
	// HTTPMessageField lists the JSON fields, tried in order, that hold the
	// line of an object in an NDJSON or JSON ingest body (ndjson.go).
	HTTPMessageField string `yaml:"http_message_field"`
}

// Values of -ingest.compress.
const (
	CompressS2   = "s2"
	CompressNone = "none"
)

// RegisterFlags registers the ingest.* flags.
func (c *Config) RegisterFlags(f *flag.FlagSet) {
	c.BatchMaxBytes = 960 << 10
	c.MaxLineBytes = 64 << 10
	c.HTTPMaxBodyBytes = 64 << 20
	c.UDPRcvbuf = 8 << 20
	f.StringVar(&c.TCPAddr, "ingest.tcp.addr", ":8888", "address of the newline-delimited TCP line listener; empty disables it")
	f.StringVar(&c.SyslogAddr, "ingest.syslog.addr", ":5514", "address of the syslog listener (UDP and TCP on the same port); empty disables it")
	f.Var((*intSize)(&c.UDPRcvbuf), "ingest.syslog.udp-rcvbuf", "receive buffer of the syslog UDP socket, which holds a burst until it is read (bytes; KiB/MiB suffixes allowed; Linux caps it at net.core.rmem_max, logged); 0 keeps the system default")
	f.Var((*intSize)(&c.BatchMaxBytes), "ingest.batch.max-bytes", "largest raw batch message (bytes; KiB/MiB suffixes allowed)")
	f.StringVar(&c.Compress, "ingest.compress", CompressS2, "compression of raw batches on the stream: s2 (lines shrink about 5×, which saves JetStream most of its work) or none")
	f.DurationVar(&c.BatchLinger, "ingest.batch.linger", 20*time.Millisecond, "longest a batch waits for more lines after its first line")
	f.Var((*intSize)(&c.MaxLineBytes), "ingest.max-line-bytes", "longest line kept whole; longer lines become oversized entries (bytes; KiB/MiB suffixes allowed)")
	f.IntVar(&c.MaxConnections, "ingest.max-connections", 1024, "open connections per TCP listener; at the limit the listener stops accepting until a connection ends, and new senders wait in the kernel's accept queue")
	f.DurationVar(&c.TCPIdleTimeout, "ingest.tcp.idle-timeout", 5*time.Minute, "close a connection of a TCP listener (lines and syslog) whose peer sent nothing for this long, keeping what it sent as at a close by the peer; 0 = never")
	f.IntVar(&c.MaxConnsPerPeer, "ingest.tcp.max-conns-per-peer", 64, "open connections per peer IP address on each TCP listener (lines and syslog); one more is refused at once (reset, counted); 0 = no limit")
	f.Var((*int64Size)(&c.HTTPMaxBodyBytes), "ingest.http.max-body-bytes", "largest HTTP ingest body after decompression (bytes; KiB/MiB suffixes allowed)")
	f.IntVar(&c.HTTPMaxConcurrent, "ingest.http.max-concurrent", 16, "HTTP ingest requests served at once; more get 429 with Retry-After (memory: up to about twice the body limit each)")
	f.DurationVar(&c.HTTPTimeout, "ingest.http.timeout", 10*time.Second, "time an HTTP ingest waits for JetStream acks before answering 503")
	f.StringVar(&c.HTTPMessageField, "ingest.http.message-field", "message,log", "JSON fields, tried in order, holding the line of each object of an application/x-ndjson or application/json ingest body (Vector: message, Fluent Bit: log); dots name nested fields; ?message_field= overrides it per request")
	f.StringVar(&c.Format, "ingest.format", "", "fixed log format of the TCP line listener; empty detects per line")
	f.IntVar(&c.PublishMaxInFlight, "ingest.publish.max-in-flight", 32, "unacknowledged batches per source; when all are in flight, TCP readers stop reading")
	f.DurationVar(&c.PublishAckTimeout, "ingest.publish.ack-timeout", 5*time.Second, "time one publish waits for its ack before the batch is sent again with the same Nats-Msg-Id")
}

// DefaultConfig returns the flag defaults.
func DefaultConfig() Config {
	var c Config
	c.RegisterFlags(flag.NewFlagSet("ingest", flag.ContinueOnError))
	return c
}

var tokenRE = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)

// Validate checks the configuration.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	tcpPort := -1
	for _, a := range []struct{ name, v string }{{"ingest.tcp.addr", c.TCPAddr}, {"ingest.syslog.addr", c.SyslogAddr}} {
		if a.v == "" {
			continue
		}
		if _, port, err := net.SplitHostPort(a.v); err != nil {
			bad("%s %q: %v", a.name, a.v, err)
		} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			bad("%s %q: bad port", a.name, a.v)
		} else if a.v == c.TCPAddr {
			tcpPort = p
		}
	}
	// Equal addresses collide, except with port 0: the kernel picks a free
	// port for each listener.
	if c.TCPAddr != "" && c.TCPAddr == c.SyslogAddr && tcpPort != 0 {
		bad("ingest.tcp.addr and ingest.syslog.addr are both %q", c.TCPAddr)
	}
	if c.UDPRcvbuf < 0 {
		bad("ingest.syslog.udp-rcvbuf must be 0 (system default) or positive, got %d", c.UDPRcvbuf)
	}
	if c.MaxLineBytes < 16 {
		bad("ingest.max-line-bytes must be at least 16, got %d", c.MaxLineBytes)
	}
	if c.Compress != CompressS2 && c.Compress != CompressNone {
		bad("ingest.compress must be %q or %q, got %q", CompressS2, CompressNone, c.Compress)
	}
	if c.BatchMaxBytes < 4096 {
		bad("ingest.batch.max-bytes must be at least 4096, got %d", c.BatchMaxBytes)
	}
	if c.MaxLineBytes > 0 && c.BatchMaxBytes > 0 && c.MaxLineBytes+batchOverhead+8 > c.BatchMaxBytes {
		bad("ingest.max-line-bytes (%d) plus %d bytes of overhead must fit into ingest.batch.max-bytes (%d)", c.MaxLineBytes, batchOverhead+8, c.BatchMaxBytes)
	}
	if c.BatchLinger <= 0 {
		bad("ingest.batch.linger must be positive, got %s", c.BatchLinger)
	}
	if c.MaxConnections < 1 {
		bad("ingest.max-connections must be at least 1, got %d", c.MaxConnections)
	}
	if c.TCPIdleTimeout < 0 {
		bad("ingest.tcp.idle-timeout must be 0 (never) or positive, got %s", c.TCPIdleTimeout)
	}
	if c.MaxConnsPerPeer < 0 {
		bad("ingest.tcp.max-conns-per-peer must be 0 (no limit) or positive, got %d", c.MaxConnsPerPeer)
	}
	if c.HTTPMaxBodyBytes < 1 {
		bad("ingest.http.max-body-bytes must be positive, got %d", c.HTTPMaxBodyBytes)
	}
	if c.HTTPMaxConcurrent < 1 {
		bad("ingest.http.max-concurrent must be at least 1, got %d", c.HTTPMaxConcurrent)
	}
	if c.HTTPTimeout <= 0 {
		bad("ingest.http.timeout must be positive, got %s", c.HTTPTimeout)
	}
	if _, err := parseMessageFields(c.HTTPMessageField); err != nil {
		bad("ingest.http.message-field: %v", err)
	}
	if c.Format != "" && !tokenRE.MatchString(c.Format) {
		bad("ingest.format %q must match [a-z0-9_-]{1,64}", c.Format)
	}
	if c.PublishMaxInFlight < 1 || c.PublishMaxInFlight > 1024 {
		bad("ingest.publish.max-in-flight must be between 1 and 1024, got %d", c.PublishMaxInFlight)
	}
	if c.PublishAckTimeout < 100*time.Millisecond {
		bad("ingest.publish.ack-timeout must be at least 100ms, got %s", c.PublishAckTimeout)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
	}
	return nil
}

// Size flags accept a plain number of bytes or a KiB/MiB/GiB (K/M/G) suffix.
type (
	intSize   int
	int64Size int64
)

func parseSize(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		n      int64
	}{{"gib", 1 << 30}, {"mib", 1 << 20}, {"kib", 1 << 10}, {"g", 1 << 30}, {"m", 1 << 20}, {"k", 1 << 10}, {"b", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.n
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n > math.MaxInt32*4/mult {
		return 0, fmt.Errorf("invalid size %q (want e.g. 65536, 64KiB, 1MiB)", s)
	}
	return n * mult, nil
}

func (v *intSize) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	if n > math.MaxInt32 {
		return fmt.Errorf("size %q is too large", s)
	}
	*v = intSize(n)
	return nil
}

func (v *intSize) String() string {
	if v == nil {
		return "0"
	}
	return strconv.Itoa(int(*v))
}

func (v *int64Size) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	*v = int64Size(n)
	return nil
}

func (v *int64Size) String() string {
	if v == nil {
		return "0"
	}
	return strconv.FormatInt(int64(*v), 10)
}
