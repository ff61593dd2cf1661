// Package natstest starts embedded nats-server instances for tests: a single
// JetStream node or a 3-node cluster, on random ports with temporary storage.
package natstest

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Option changes the options of a test server.
type Option func(*server.Options)

// MaxPayload sets the largest message the server accepts. The default is a
// stock nats-server's 1 MiB; smaller values force the paths that split
// windows into chunks cheaply.
func MaxPayload(n int32) Option { return func(o *server.Options) { o.MaxPayload = n } }

// SyncAlways makes the file store fsync every write.
func SyncAlways() Option { return func(o *server.Options) { o.SyncAlways = true } }

// baseOptions are a JetStream server's options on a random loopback port with
// temporary storage and limits sized for tests, not for the host.
func baseOptions(t testing.TB, name string, opts []Option) *server.Options {
	o := &server.Options{
		ServerName:         name,
		Host:               "127.0.0.1",
		Port:               -1,
		JetStream:          true,
		StoreDir:           t.TempDir(),
		NoSigs:             true,
		NoLog:              true,
		MaxPayload:         1 << 20,
		JetStreamMaxMemory: 256 << 20,
		JetStreamMaxStore:  8 << 30,
	}
	for _, f := range opts {
		f(o)
	}
	return o
}

// started remembers the options of each server for RestartServer.
var started sync.Map

// RunBasicJetStreamServer starts one JetStream server; it stops when the test ends.
func RunBasicJetStreamServer(t testing.TB, opts ...Option) *server.Server {
	t.Helper()
	return start(t, baseOptions(t, "test", opts))
}

// RestartServer starts a server again on the same options (same store dir).
func RestartServer(t testing.TB, s *server.Server) *server.Server {
	t.Helper()
	v, ok := started.Load(s)
	if !ok {
		t.Fatal("RestartServer: server was not started by natstest")
	}
	o := *v.(*server.Options)
	o.Port = s.Addr().(*net.TCPAddr).Port
	s.Shutdown()
	s.WaitForShutdown()
	return start(t, &o)
}

func start(t testing.TB, opts *server.Options) *server.Server {
	t.Helper()
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("new nats server: %v", err)
	}
	started.Store(s, opts)
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// Cluster is a 3-node JetStream cluster in one process.
type Cluster struct {
	Servers []*server.Server
}

// URLs is the comma-separated client URL list of every node.
func (c *Cluster) URLs() string {
	var u []string
	for _, s := range c.Servers {
		u = append(u, s.ClientURL())
	}
	return strings.Join(u, ",")
}

// RunJetStreamCluster starts three clustered JetStream servers and waits until
// each sees a meta leader and three peers, so that R3 assets can be created.
func RunJetStreamCluster(t testing.TB, opts ...Option) *Cluster {
	t.Helper()
	const n = 3
	ports := make([]int, n)
	for i := range ports {
		ports[i] = freePort(t)
	}
	var routes []*url.URL
	for _, p := range ports {
		routes = append(routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", p)})
	}
	c := &Cluster{}
	for i := 0; i < n; i++ {
		o := baseOptions(t, fmt.Sprintf("n%d", i+1), opts)
		o.Cluster = server.ClusterOpts{Name: "logtally-test", Host: "127.0.0.1", Port: ports[i]}
		o.Routes = routes
		s, err := server.NewServer(o)
		if err != nil {
			t.Fatalf("new cluster node: %v", err)
		}
		go s.Start()
		t.Cleanup(func() {
			s.Shutdown()
			s.WaitForShutdown()
		})
		c.Servers = append(c.Servers, s)
	}
	for _, s := range c.Servers {
		if !s.ReadyForConnections(30 * time.Second) {
			t.Fatal("cluster node not ready")
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if leader := c.leader(); leader != nil && len(leader.JetStreamClusterPeers()) == n {
			current := true
			for _, s := range c.Servers {
				current = current && s.JetStreamIsCurrent()
			}
			if current {
				return c
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("cluster did not form a meta leader with 3 peers")
	return nil
}

func (c *Cluster) leader() *server.Server {
	for _, s := range c.Servers {
		if s.JetStreamIsLeader() {
			return s
		}
	}
	return nil
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Connect opens a client connection to s that closes when the test ends.
func Connect(t testing.TB, s *server.Server) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return nc, js
}
