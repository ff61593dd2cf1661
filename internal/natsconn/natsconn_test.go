package natsconn

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats-server/v2/server"
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
	for _, c := range []Config{
		{URL: "nats://x", Replicas: 1, User: "u"},
		{URL: "nats://x", Replicas: 1, User: "u", Password: "p", Token: "t"},
		{URL: "nats://x", Replicas: 1, TLSCertFile: "c"},
		{Replicas: 1, Token: "t"},
		{URL: "nats://x", Replicas: 0},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if err := (&Config{URL: "nats://x", Replicas: 3, CredsFile: "f", TLSCAFile: "ca"}).Validate(); err != nil {
		t.Errorf("valid config refused: %v", err)
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
