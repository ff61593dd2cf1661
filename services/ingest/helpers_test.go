package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/klauspost/compress/s2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/proto"

	logtallyv1 "github.com/logtally/logtally/gen/logtally/v1"
	"github.com/logtally/logtally/internal/natsconn"
	"github.com/logtally/logtally/internal/natstest"
	"github.com/logtally/logtally/internal/obs"
	"github.com/logtally/logtally/internal/service"
	"github.com/logtally/logtally/internal/topology"
)

const testInstance = "test-inst"

// env is one embedded JetStream server, a process-like connection and a
// started ingest service.
type env struct {
	srv    *server.Server
	conn   *natsconn.Conn
	svc    *Service
	reg    *prometheus.Registry
	mux    *http.ServeMux
	health *obs.Health
	cfg    Config

	mu      sync.Mutex
	lastSeq uint64
	got     []rawMsg
}

// rawMsg is one message read back from the raw stream.
type rawMsg struct {
	seq     uint64
	subject string
	msgID   string
	batch   *logtallyv1.RawBatch
}

func testLogger() hclog.Logger {
	var out io.Writer = io.Discard
	if testing.Verbose() {
		out = os.Stderr
	}
	return hclog.New(&hclog.LoggerOptions{Name: "test", Level: hclog.Info, Output: out})
}

func testConfig() Config {
	c := DefaultConfig()
	c.TCPAddr = "127.0.0.1:0"
	c.SyslogAddr = "127.0.0.1:0"
	c.BatchLinger = 5 * time.Millisecond
	c.HTTPTimeout = 2 * time.Second
	c.PublishAckTimeout = 2 * time.Second
	return c
}

func newEnv(t testing.TB, mutate func(*Config)) *env {
	t.Helper()
	return newEnvOn(t, natstest.RunBasicJetStreamServer(t), mutate)
}

func newEnvOn(t testing.TB, srv *server.Server, mutate func(*Config)) *env {
	t.Helper()
	log := testLogger()
	conn, err := natsconn.Connect(natsconn.Config{URL: srv.ClientURL(), Replicas: 1}, nil, log)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(conn.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := topology.Ensure(ctx, conn.JS, topology.Defaults()); err != nil {
		t.Fatalf("topology: %v", err)
	}
	cfg := testConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	e := &env{srv: srv, conn: conn, reg: prometheus.NewRegistry(), mux: http.NewServeMux(), health: obs.NewHealth(), cfg: cfg}
	svc, err := New(cfg, service.Deps{
		Log:        log,
		NATS:       conn,
		Registerer: e.reg,
		Mux:        e.mux,
		Health:     e.health,
		Topology:   topology.Defaults(),
		InstanceID: testInstance,
	})
	if err != nil {
		t.Fatalf("new: %v", err)
	}
	if err := svc.Start(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	e.svc = svc
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = svc.Stop(ctx)
	})
	return e
}

// poll calls cond until it is true or the timeout passes.
func poll(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fetch reads messages of the raw stream that were not read yet (by
// sequence, without a consumer: the stream is a work queue).
func (e *env) fetch(t testing.TB) []rawMsg {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := e.conn.JS.Stream(ctx, topology.RawStream)
	if err != nil {
		t.Fatalf("raw stream: %v", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatalf("raw stream info: %v", err)
	}
	for seq := max(e.lastSeq+1, info.State.FirstSeq); seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("get msg %d: %v", seq, err)
		}
		b, err := decodeRawMsg(m.Header, m.Data)
		if err != nil {
			t.Fatalf("msg %d is not a RawBatch: %v", seq, err)
		}
		e.got = append(e.got, rawMsg{seq: seq, subject: m.Subject, msgID: m.Header.Get(jetstream.MsgIDHeader), batch: b})
	}
	e.lastSeq = max(e.lastSeq, info.State.LastSeq)
	return append([]rawMsg(nil), e.got...)
}

// decodeRawMsg reads a raw stream message as the parser does: S2
// compressed when the header says so.
func decodeRawMsg(h nats.Header, data []byte) (*logtallyv1.RawBatch, error) {
	if enc := h.Get(topology.EncodingHeader); enc != "" {
		if enc != topology.EncodingS2 {
			return nil, fmt.Errorf("unknown encoding %q", enc)
		}
		plain, err := s2.Decode(nil, data)
		if err != nil {
			return nil, err
		}
		data = plain
	}
	var b logtallyv1.RawBatch
	if err := proto.Unmarshal(data, &b); err != nil {
		return nil, err
	}
	return &b, nil
}

// entries counts lines plus oversized entries of the messages of a source
// ("" for all).
func entries(msgs []rawMsg, source string) (lines, oversized int) {
	for _, m := range msgs {
		if source == "" || m.batch.Source == source {
			lines += len(m.batch.Lines)
			oversized += len(m.batch.Oversized)
		}
	}
	return lines, oversized
}

// waitEntries polls the stream until source has at least n lines+oversized.
func (e *env) waitEntries(t testing.TB, source string, n int, timeout time.Duration) []rawMsg {
	t.Helper()
	var msgs []rawMsg
	poll(t, timeout, "entries in the raw stream", func() bool {
		msgs = e.fetch(t)
		l, o := entries(msgs, source)
		return l+o >= n
	})
	return msgs
}

func linesOf(msgs []rawMsg, source string) []string {
	var out []string
	for _, m := range msgs {
		if m.batch.Source == source {
			for _, l := range m.batch.Lines {
				out = append(out, string(l))
			}
		}
	}
	return out
}

func counterValue(c prometheus.Collector) float64 { return testutil.ToFloat64(c) }

// restartable starts a server we can stop and later start again on the
// same port and store directory (natstest.RestartServer needs the old
// server still running, because a stopped server has no address).
type restartable struct {
	t    testing.TB
	opts server.Options
	srv  *server.Server
}

func newRestartable(t testing.TB) *restartable {
	t.Helper()
	r := &restartable{t: t, opts: server.Options{
		ServerName:         "restartable",
		Host:               "127.0.0.1",
		Port:               -1,
		JetStream:          true,
		StoreDir:           filepath.Join(t.TempDir(), "store"),
		NoSigs:             true,
		NoLog:              true,
		MaxPayload:         1 << 20,
		JetStreamMaxMemory: 256 << 20,
		JetStreamMaxStore:  8 << 30,
	}}
	r.start()
	r.opts.Port = r.srv.Addr().(*net.TCPAddr).Port
	t.Cleanup(r.stop)
	return r
}

func (r *restartable) start() {
	o := r.opts
	s, err := server.NewServer(&o)
	if err != nil {
		r.t.Fatalf("new server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		r.t.Fatal("server not ready")
	}
	r.srv = s
}

func (r *restartable) stop() {
	if r.srv != nil {
		r.srv.Shutdown()
		r.srv.WaitForShutdown()
		r.srv = nil
	}
}

func dial(t testing.TB, network string, addr net.Addr) net.Conn {
	t.Helper()
	c, err := net.DialTimeout(network, addr.String(), 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s %s: %v", network, addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func mustWrite(t testing.TB, c net.Conn, s string) {
	t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func hasPrefix(s, p string) bool { return strings.HasPrefix(s, p) }
