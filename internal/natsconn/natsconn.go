// Package natsconn connects a target to NATS: an external server or cluster
// given by URL, or a server embedded in the process for all-in-one use.
package natsconn

import (
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Config selects the NATS server.
type Config struct {
	URL      string `yaml:"url"`
	Replicas int    `yaml:"replicas"`
	// Name identifies the connection in the server's monitoring.
	Name string `yaml:"-"`
}

// RegisterFlags registers the nats.* flags.
func (c *Config) RegisterFlags(f *flag.FlagSet) {
	f.StringVar(&c.URL, "nats.url", "", "NATS server URLs, comma separated; empty runs an embedded server")
	f.IntVar(&c.Replicas, "nats.replicas", 1, "replicas of every stream and bucket (3 on a 3-node cluster)")
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if c.Replicas < 1 || c.Replicas > 5 {
		return fmt.Errorf("nats.replicas must be between 1 and 5, got %d", c.Replicas)
	}
	return nil
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
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream context: %w", err)
	}
	return &Conn{NC: nc, JS: js}, nil
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

// EmbeddedOptions are the options of the all-in-one server.
func EmbeddedOptions(dataDir string) *server.Options {
	return &server.Options{
		ServerName:         "logtally-embedded",
		JetStream:          true,
		StoreDir:           filepath.Join(dataDir, "jetstream"),
		DontListen:         true,
		NoSigs:             true,
		MaxPayload:         8 << 20,
		JetStreamMaxMemory: 256 << 20,
	}
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
	return srv, nil
}

type serverLogger struct{ log hclog.Logger }

func (l *serverLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Fatalf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Debugf(format string, v ...any)  { l.log.Trace(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Tracef(format string, v ...any)  { l.log.Trace(fmt.Sprintf(format, v...)) }
