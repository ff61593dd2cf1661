package natsconn

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/logtally/logtally/internal/natstest"
)

func runServer(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	opts.Host, opts.Port, opts.NoLog, opts.NoSigs = "127.0.0.1", -1, true, true
	opts.JetStream, opts.StoreDir = true, t.TempDir()
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(s.Shutdown)
	return s
}

func url(s *server.Server) string {
	return "nats://" + s.Addr().(*net.TCPAddr).String()
}

// works connects with cfg and proves the session can use JetStream.
func works(t *testing.T, cfg Config) error {
	t.Helper()
	c, err := Connect(cfg, nil, hclog.NewNullLogger())
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = c.JS.AccountInfo(ctx)
	return err
}

func TestUserPasswordAndToken(t *testing.T) {
	s := runServer(t, &server.Options{Username: "logtally", Password: "s3cret"})
	if err := works(t, Config{URL: url(s), Replicas: 1, User: "logtally", Password: "s3cret"}); err != nil {
		t.Fatalf("right password: %v", err)
	}
	err := works(t, Config{URL: url(s), Replicas: 1, User: "logtally", Password: "wrong"})
	if err == nil || !strings.Contains(err.Error(), "refused the credentials") {
		t.Fatalf("wrong password: %v", err)
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Fatalf("the error leaks the password: %v", err)
	}
	ts := runServer(t, &server.Options{Authorization: "tok-123"})
	if err := works(t, Config{URL: url(ts), Replicas: 1, Token: "tok-123"}); err != nil {
		t.Fatalf("token: %v", err)
	}
	if err := works(t, Config{URL: url(ts), Replicas: 1}); err == nil {
		t.Fatal("no token accepted")
	}
}

func TestNKey(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	file := filepath.Join(t.TempDir(), "user.nk")
	if err := os.WriteFile(file, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	s := runServer(t, &server.Options{Nkeys: []*server.NkeyUser{{Nkey: pub}}})
	if err := works(t, Config{URL: url(s), Replicas: 1, NKeySeed: file}); err != nil {
		t.Fatalf("nkey: %v", err)
	}
}

func TestTLSWithCA(t *testing.T) {
	dir := t.TempDir()
	caFile, certFile, keyFile := natstest.WriteCerts(t, dir)
	tlsCfg, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: certFile, KeyFile: keyFile, CaFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	s := runServer(t, &server.Options{TLSConfig: tlsCfg, TLS: true, Username: "u", Password: "p"})
	u := "tls://127.0.0.1:" + strings.Split(s.Addr().String(), ":")[1]
	if err := works(t, Config{URL: u, Replicas: 1, User: "u", Password: "p", TLSCAFile: caFile}); err != nil {
		t.Fatalf("tls with the CA: %v", err)
	}
	// Without the CA the server's certificate is not trusted.
	c, err := Connect(Config{URL: u, Replicas: 1, User: "u", Password: "p"}, nil, hclog.NewNullLogger())
	if err == nil {
		defer c.Close()
		time.Sleep(500 * time.Millisecond)
		if c.NC.IsConnected() {
			t.Fatal("connected over TLS without trusting the CA")
		}
	}
}

func TestValidate(t *testing.T) {
	// withSync fills in the defaults of -nats.sync and -nats.sync-interval
	// when a case leaves them out, so that it fails for its own reason.
	withSync := func(c Config) Config {
		if c.Sync == "" {
			c.Sync, c.SyncInterval = SyncInterval, DefaultSyncInterval
		}
		return c
	}
	for _, c := range []Config{
		{URL: "nats://x", Replicas: 1, User: "u"},
		{URL: "nats://x", Replicas: 1, User: "u", Password: "p", Token: "t"},
		{URL: "nats://x", Replicas: 1, TLSCertFile: "c"},
		{Replicas: 1, Token: "t"},
		{URL: "nats://x", Replicas: 0},
		{Replicas: 1, Sync: "sometimes", SyncInterval: time.Minute},
		{Replicas: 1, Sync: "Always"},
		{Replicas: 1, Sync: SyncInterval, SyncInterval: 0},
		{Replicas: 1, Sync: SyncInterval, SyncInterval: -time.Second},
	} {
		if c = withSync(c); c.Validate() == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	for _, c := range []Config{
		{URL: "nats://x", Replicas: 3, CredsFile: "f", TLSCAFile: "ca"},
		{Replicas: 1, Sync: SyncAlways},
		{Replicas: 1, Sync: SyncAlways, SyncInterval: 0},
		{Replicas: 1, Sync: SyncInterval, SyncInterval: time.Second},
		{URL: "nats://x", Replicas: 3, Sync: SyncAlways},
	} {
		c := withSync(c)
		if err := c.Validate(); err != nil {
			t.Errorf("valid config %+v refused: %v", c, err)
		}
	}
}

// parseFlags registers the nats.* flags and parses args into a Config.
func parseFlags(t *testing.T, args ...string) (Config, error) {
	t.Helper()
	var c Config
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// TestSyncFlags: -nats.sync and -nats.sync-interval reach the embedded
// server's file store, and its max_payload is the stock 1 MiB.
func TestSyncFlags(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		always   bool
		interval time.Duration
	}{
		{nil, false, 2 * time.Minute},
		{[]string{"-nats.sync=interval"}, false, 2 * time.Minute},
		{[]string{"-nats.sync=interval", "-nats.sync-interval=10s"}, false, 10 * time.Second},
		{[]string{"-nats.sync=always"}, true, 2 * time.Minute},
		{[]string{"-nats.sync=always", "-nats.sync-interval=10s"}, true, 2 * time.Minute},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			c, err := parseFlags(t, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			opts := c.EmbeddedOptions(t.TempDir())
			if opts.SyncAlways != tc.always || (!tc.always && opts.SyncInterval != tc.interval) {
				t.Fatalf("options: SyncAlways %v SyncInterval %s, want %v %s", opts.SyncAlways, opts.SyncInterval, tc.always, tc.interval)
			}
			opts.NoLog = true
			srv, err := RunEmbedded(opts, hclog.NewNullLogger())
			if err != nil {
				t.Fatal(err)
			}
			defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
			jsc := srv.JetStreamConfig()
			if jsc == nil {
				t.Fatal("JetStream is not enabled")
			}
			if jsc.SyncAlways != tc.always || jsc.SyncInterval != tc.interval {
				t.Errorf("running server: SyncAlways %v SyncInterval %s, want %v %s", jsc.SyncAlways, jsc.SyncInterval, tc.always, tc.interval)
			}
			conn, err := Connect(c, srv, hclog.NewNullLogger())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if mp := conn.NC.MaxPayload(); mp != 1<<20 {
				t.Errorf("embedded max_payload %d, want %d (1 MiB)", mp, 1<<20)
			}
			// A write goes through the file store with either setting.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := conn.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "SYNC", Subjects: []string{"sync.>"}, Storage: jetstream.FileStorage}); err != nil {
				t.Fatal(err)
			}
			if _, err := conn.JS.Publish(ctx, "sync.x", []byte("x")); err != nil {
				t.Fatal(err)
			}
		})
	}
	// A zero Config: the server's defaults.
	if opts := (Config{}).EmbeddedOptions(t.TempDir()); opts.SyncAlways || opts.SyncInterval != 2*time.Minute || opts.MaxPayload != 1<<20 {
		t.Errorf("EmbeddedOptions: SyncAlways %v SyncInterval %s MaxPayload %d", opts.SyncAlways, opts.SyncInterval, opts.MaxPayload)
	}
	for _, args := range [][]string{
		{"-nats.sync=sometimes"},
		{"-nats.sync="},
		{"-nats.sync=ALWAYS"},
		{"-nats.sync-interval=0s"},
		{"-nats.sync=interval", "-nats.sync-interval=-1s"},
		{"-nats.sync-interval=often"},
	} {
		_, err := parseFlags(t, args...)
		if err == nil {
			t.Errorf("%v accepted", args)
			continue
		}
		if !strings.Contains(err.Error(), "nats.sync") {
			t.Errorf("%v: error %q does not name the flag", args, err)
		}
	}
}

// TestSyncAlwaysWithExternalNATS: -nats.sync=always is valid with
// -nats.url but cannot configure that server, so the connection warns.
func TestSyncAlwaysWithExternalNATS(t *testing.T) {
	srv := natstest.RunBasicJetStreamServer(t)
	for _, sync := range []string{SyncAlways, SyncInterval} {
		var buf bytes.Buffer
		log := hclog.New(&hclog.LoggerOptions{Output: &buf, Level: hclog.Warn})
		c, err := parseFlags(t, "-nats.url="+srv.ClientURL(), "-nats.sync="+sync)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := Connect(c, nil, log)
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
		warned := strings.Contains(buf.String(), "-nats.sync=always configures only the embedded server")
		if warned != (sync == SyncAlways) {
			t.Errorf("-nats.sync=%s with -nats.url: warned %v, log:\n%s", sync, warned, buf.String())
		}
	}
}

// TestPublishTimeout: an acknowledgement that never comes fails the publish
// after -nats.publish-timeout instead of leaving the caller waiting.
func TestPublishTimeout(t *testing.T) {
	srv := natstest.RunBasicJetStreamServer(t)
	c, err := Connect(Config{URL: srv.ClientURL(), Replicas: 1, PublishTimeout: 200 * time.Millisecond}, nil, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A plain subscriber takes the message and never answers, as a stream
	// without a leader would.
	sub, err := c.NC.SubscribeSync("silent.>")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	f, err := c.JS.PublishAsync("silent.x", []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-f.Ok():
		t.Fatal("acknowledged by nobody")
	case err := <-f.Err():
		if !errors.Is(err, jetstream.ErrAsyncPublishTimeout) {
			t.Fatalf("want a publish timeout, got %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("publish still waiting after 10s")
	}
}

func TestEmbeddedListen(t *testing.T) {
	c := Config{Replicas: 1, Sync: SyncInterval, SyncInterval: time.Minute, EmbeddedListen: "127.0.0.1:0"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	srv, err := RunEmbedded(c.EmbeddedOptions(t.TempDir()), hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatalf("a stage process cannot join the embedded server at %s: %v", srv.ClientURL(), err)
	}
	nc.Close()
	bad := c
	bad.URL = "nats://elsewhere:4222"
	if err := bad.Validate(); err == nil {
		t.Fatal("-nats.embedded-listen with -nats.url accepted")
	}
	bad = c
	bad.EmbeddedListen = "nowhere"
	if err := bad.Validate(); err == nil {
		t.Fatal("an address without a port accepted")
	}
}
