// Package natsconn connects a target to NATS: an external server or cluster
// given by URL, or a server embedded in the process for all-in-one use.
package natsconn

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Config selects the NATS server and how to authenticate to it.
type Config struct {
	URL      string `yaml:"url"`
	Replicas int    `yaml:"replicas"`
	// PublishTimeout bounds the wait for the acknowledgement of an
	// asynchronous publish. Without it an ack lost in a leader change
	// leaves the publisher waiting forever.
	PublishTimeout time.Duration `yaml:"publish_timeout"`
	// Name identifies the connection in the server's monitoring.
	Name string `yaml:"-"`

	// Sync and SyncInterval choose when the embedded server's file store
	// calls fsync (its sync_interval): after every write (SyncAlways) or
	// every SyncInterval. They configure only the embedded server: an
	// external NATS takes sync_interval from its own config file. Validate
	// wants one of the two modes; EmbeddedOptions of a Config built without
	// the flags (empty, zero) uses the server's default, every 2 minutes.
	Sync         string        `yaml:"sync"`
	SyncInterval time.Duration `yaml:"sync_interval"`
	// EmbeddedListen makes the embedded server accept clients on a TCP
	// address, so that stage processes can join an all-in-one process
	// (`logtally bench -aggregators 2` does). Empty: in-process only.
	EmbeddedListen string `yaml:"embedded_listen"`

	User        string `yaml:"user"`
	Password    string `yaml:"password"`
	Token       string `yaml:"token"`
	NKeySeed    string `yaml:"nkey_seed_file"`
	CredsFile   string `yaml:"creds_file"`
	TLSCAFile   string `yaml:"tls_ca_file"`
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
}

// Values of -nats.sync.
const (
	// SyncInterval fsyncs the file store every -nats.sync-interval (the
	// server's default, 2 minutes): acknowledged writes of that window can be
	// lost if every node loses power at once.
	SyncInterval = "interval"
	// SyncAlways fsyncs after every write (sync_interval: always): slower,
	// but acknowledged writes survive a power loss.
	SyncAlways = "always"
)

// DefaultSyncInterval is nats-server's default sync_interval.
const DefaultSyncInterval = 2 * time.Minute

// RegisterFlags registers the nats.* flags.
func (c *Config) RegisterFlags(f *flag.FlagSet) {
	f.StringVar(&c.URL, "nats.url", "", "NATS server URLs, comma separated; empty runs an embedded server")
	f.IntVar(&c.Replicas, "nats.replicas", 1, "replicas of every stream and bucket (3 on a 3-node cluster)")
	f.DurationVar(&c.PublishTimeout, "nats.publish-timeout", 5*time.Second, "longest wait for JetStream to acknowledge a publish before it is retried (parser output, aggregator state)")
	f.StringVar(&c.Sync, "nats.sync", SyncInterval, "embedded server only: when its file store fsyncs, \"always\" (every write; acknowledged writes survive a power loss, slower) or \"interval\" (every -nats.sync-interval); an external NATS sets sync_interval in its own config")
	f.DurationVar(&c.SyncInterval, "nats.sync-interval", DefaultSyncInterval, "embedded server only: fsync interval of its file store with -nats.sync=interval")
	f.StringVar(&c.EmbeddedListen, "nats.embedded-listen", "", "embedded server only: also accept NATS clients on this host:port (no authentication: bind to loopback), so that stage processes can join; empty keeps it in-process")
	f.StringVar(&c.User, "nats.user", "", "user name for NATS user/password authentication")
	f.StringVar(&c.Password, "nats.password", "", "password for NATS user/password authentication (prefer the environment or a file over the command line)")
	f.StringVar(&c.Token, "nats.token", "", "token for NATS token authentication")
	f.StringVar(&c.NKeySeed, "nats.nkey-seed-file", "", "file holding an NKey seed (SU...) for NKey authentication")
	f.StringVar(&c.CredsFile, "nats.creds-file", "", "NATS credentials file (JWT and NKey seed)")
	f.StringVar(&c.TLSCAFile, "nats.tls.ca-file", "", "CA certificate(s) that sign the NATS servers' certificates; enables TLS")
	f.StringVar(&c.TLSCertFile, "nats.tls.cert-file", "", "client certificate for NATS mutual TLS")
	f.StringVar(&c.TLSKeyFile, "nats.tls.key-file", "", "client key for NATS mutual TLS")
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if c.Replicas < 1 || c.Replicas > 5 {
		return fmt.Errorf("nats.replicas must be between 1 and 5, got %d", c.Replicas)
	}
	if c.PublishTimeout < 0 {
		return fmt.Errorf("nats.publish-timeout must not be negative, got %s", c.PublishTimeout)
	}
	switch c.Sync {
	case SyncAlways:
	case SyncInterval:
		if c.SyncInterval <= 0 {
			return fmt.Errorf("nats.sync-interval must be positive, got %s (-nats.sync=always fsyncs every write)", c.SyncInterval)
		}
	default:
		return fmt.Errorf("nats.sync must be %q or %q, got %q", SyncInterval, SyncAlways, c.Sync)
	}
	methods := 0
	for _, set := range []bool{c.User != "" || c.Password != "", c.Token != "", c.NKeySeed != "", c.CredsFile != ""} {
		if set {
			methods++
		}
	}
	if methods > 1 {
		return errors.New("nats: choose one of user/password, token, nkey-seed-file and creds-file")
	}
	if (c.User == "") != (c.Password == "") {
		return errors.New("nats.user and nats.password go together")
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return errors.New("nats.tls.cert-file and nats.tls.key-file go together")
	}
	if c.EmbeddedListen != "" {
		if c.URL != "" {
			return errors.New("nats.embedded-listen configures the embedded server, which does not run with -nats.url")
		}
		if _, _, err := splitHostPort(c.EmbeddedListen); err != nil {
			return fmt.Errorf("nats.embedded-listen %q: %w", c.EmbeddedListen, err)
		}
	}
	if (c.User != "" || c.Token != "" || c.NKeySeed != "" || c.CredsFile != "" || c.TLSCAFile != "") && c.URL == "" {
		return errors.New("nats authentication and TLS settings need -nats.url (the embedded server has neither)")
	}
	return nil
}

// authOptions turns the credentials into connection options. Secrets stay in
// the options: nothing here is logged.
func (c Config) authOptions() ([]nats.Option, error) {
	var opts []nats.Option
	switch {
	case c.User != "":
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	case c.Token != "":
		opts = append(opts, nats.Token(c.Token))
	case c.NKeySeed != "":
		o, err := nats.NkeyOptionFromSeed(c.NKeySeed)
		if err != nil {
			return nil, fmt.Errorf("nats nkey seed file %s: %w", c.NKeySeed, err)
		}
		opts = append(opts, o)
	case c.CredsFile != "":
		opts = append(opts, nats.UserCredentials(c.CredsFile))
	}
	if c.TLSCAFile != "" {
		opts = append(opts, nats.RootCAs(c.TLSCAFile))
	}
	if c.TLSCertFile != "" {
		opts = append(opts, nats.ClientCert(c.TLSCertFile, c.TLSKeyFile))
	}
	return opts, nil
}

// Conn is an open connection and its JetStream context.
type Conn struct {
	NC *nats.Conn
	JS jetstream.JetStream
}

// Connect dials NATS. With an embedded server srv, the connection is in-process.
// It keeps reconnecting forever: stages wait out a NATS outage instead of exiting.
func Connect(c Config, srv *server.Server, log hclog.Logger) (*Conn, error) {
	opts := []nats.Option{
		nats.Name(c.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectBufSize(-1), // publishes fail fast while disconnected: callers retry
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "error", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted()) }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Warn("nats async error", "subject", subj, "error", err)
		}),
	}
	auth, err := c.authOptions()
	if err != nil {
		return nil, err
	}
	opts = append(opts, auth...)
	if srv == nil && c.URL != "" && c.Sync == SyncAlways {
		log.Warn("-nats.sync=always configures only the embedded server and has no effect with -nats.url: set sync_interval: always in the jetstream block of the NATS servers' config")
	}
	url := c.URL
	if srv != nil {
		opts = append(opts, nats.InProcessServer(srv))
		url = ""
	} else if url == "" {
		return nil, errors.New("nats.url is empty and no embedded server runs")
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats %q: %w", url, err)
	}
	if err := waitAuth(nc); err != nil {
		nc.Close()
		return nil, err
	}
	timeout := c.PublishTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096), jetstream.WithPublishAsyncTimeout(timeout))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream context: %w", err)
	}
	return &Conn{NC: nc, JS: js}, nil
}

// waitAuth gives a new connection a moment to come up so that refused
// credentials fail the start with a clear error instead of retrying forever;
// an unreachable server is waited for by the reconnect logic.
func waitAuth(nc *nats.Conn) error {
	deadline := time.Now().Add(3 * time.Second)
	for !nc.IsConnected() && time.Now().Before(deadline) {
		if err := nc.LastError(); err != nil && isAuthError(err) {
			return fmt.Errorf("nats refused the credentials: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := nc.LastError(); !nc.IsConnected() && err != nil && isAuthError(err) {
		return fmt.Errorf("nats refused the credentials: %w", err)
	}
	return nil
}

func isAuthError(err error) bool {
	return errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) ||
		strings.Contains(strings.ToLower(err.Error()), "authorization violation")
}

// Close drains the connection so that pending publishes and acks go out.
func (c *Conn) Close() {
	if c == nil || c.NC == nil {
		return
	}
	if err := c.NC.Drain(); err != nil {
		c.NC.Close()
		return
	}
	deadline := time.Now().Add(10 * time.Second)
	for !c.NC.IsClosed() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	c.NC.Close()
}

// EmbeddedMaxPayload is the embedded server's max_payload: the stock
// nats-server default, so that a process tested all-in-one also fits an
// external server with default settings. Ingest batches (256 KiB) and the
// window values (sized from the connection's MaxPayload) stay below it.
const EmbeddedMaxPayload = 1 << 20

// EmbeddedOptions are the options of the all-in-one server storing under
// dataDir, with the file store sync of -nats.sync and -nats.sync-interval.
func (c Config) EmbeddedOptions(dataDir string) *server.Options {
	opts := &server.Options{
		ServerName:         "logtally-embedded",
		JetStream:          true,
		StoreDir:           filepath.Join(dataDir, "jetstream"),
		DontListen:         true,
		NoSigs:             true,
		MaxPayload:         EmbeddedMaxPayload,
		JetStreamMaxMemory: 256 << 20,
		SyncInterval:       DefaultSyncInterval,
	}
	switch {
	case c.Sync == SyncAlways:
		opts.SyncAlways = true
	case c.SyncInterval > 0:
		opts.SyncInterval = c.SyncInterval
	}
	if host, port, err := splitHostPort(c.EmbeddedListen); c.EmbeddedListen != "" && err == nil {
		opts.DontListen, opts.Host, opts.Port = false, host, port
	}
	return opts
}

func splitHostPort(addr string) (string, int, error) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", ps)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	if port == 0 {
		port = -1 // a random port, as the server spells it
	}
	return host, port, nil
}

// RunEmbedded starts an embedded JetStream server and waits until it accepts
// connections.
func RunEmbedded(opts *server.Options, log hclog.Logger) (*server.Server, error) {
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	srv.SetLoggerV2(&serverLogger{log: log.Named("nats")}, false, false, false)
	go srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("embedded nats: not ready after 30s")
	}
	if jsc := srv.JetStreamConfig(); jsc != nil {
		if jsc.SyncAlways {
			log.Info("embedded nats file store fsyncs every write", "sync", SyncAlways)
		} else {
			log.Info("embedded nats file store fsyncs periodically", "sync", SyncInterval, "sync_interval", jsc.SyncInterval)
		}
	}
	return srv, nil
}

type serverLogger struct{ log hclog.Logger }

func (l *serverLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Fatalf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Debugf(format string, v ...any)  { l.log.Trace(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Tracef(format string, v ...any)  { l.log.Trace(fmt.Sprintf(format, v...)) }
