// Package chaos runs the logtally pipeline as separate OS processes on a
// 3-node JetStream cluster and injects faults (SIGKILL, SIGTERM, NATS node
// crashes and outages, scaling) while a steady load is streamed, then checks
// every per-IP, per-window count against an independent reference.
//
// The exported helpers (cluster, processes, load generators, verification)
// live in non-test files so that other tests and tools can reuse them.
package chaos

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/logtally/logtally/internal/natstest"
)

// Node is one nats-server of a Cluster. It keeps its ports and store
// directory across restarts.
type Node struct {
	Name       string
	ClientPort int
	opts       server.Options // template; copied for every start
	srv        *server.Server
}

// URL is the node's client URL (stable across restarts).
func (n *Node) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.ClientPort) }

// Running reports whether the node is up.
func (n *Node) Running() bool { return n.srv != nil }

// Server returns the running server, or nil.
func (n *Node) Server() *server.Server { return n.srv }

// Cluster is a 3-node JetStream cluster in this process whose nodes can be
// stopped and started again on the same ports and store directories.
type Cluster struct {
	mu    sync.Mutex
	Nodes []*Node
	// Client credentials and the CA of the nodes' certificates.
	User, Password, CAFile string
	// StageFlags and StageEnv connect a logtally process with them; the
	// password travels in the environment, not on the command line, where
	// every user of the machine could read it.
	StageFlags []string
	StageEnv   []string
}

// FreePort returns a currently unused loopback TCP port.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// FreeAddr returns a currently unused loopback address "127.0.0.1:port".
func FreeAddr(t testing.TB) string {
	return fmt.Sprintf("127.0.0.1:%d", FreePort(t))
}

// StartCluster starts three clustered JetStream servers on random ports
// and waits until they have a meta leader with three current peers. The
// servers stop when the test ends. LOGTALLY_CHAOS_NATS_LOG=1 shows their logs.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	const n = 3
	clusterPorts := make([]int, n)
	var routes []*url.URL
	for i := range clusterPorts {
		clusterPorts[i] = FreePort(t)
		routes = append(routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", clusterPorts[i])})
	}
	// Clients authenticate and talk TLS, as in production: every stage gets
	// c.StageFlags. Routes between the nodes stay plain on loopback.
	certDir := t.TempDir()
	ca, cert, key := natstest.WriteCerts(t, certDir)
	tlsCfg, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: cert, KeyFile: key, CaFile: ca})
	if err != nil {
		t.Fatalf("nats tls: %v", err)
	}
	c := &Cluster{CAFile: ca, User: "logtally", Password: "chaos-" + fmt.Sprint(time.Now().UnixNano())}
	c.StageFlags = []string{"-nats.user=" + c.User, "-nats.tls.ca-file=" + c.CAFile}
	c.StageEnv = []string{"LOGTALLY_NATS_PASSWORD=" + c.Password}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("n%d", i+1)
		node := &Node{Name: name, ClientPort: FreePort(t)}
		node.opts = server.Options{
			ServerName:         name,
			Host:               "127.0.0.1",
			Port:               node.ClientPort,
			JetStream:          true,
			StoreDir:           t.TempDir(),
			NoSigs:             true,
			NoLog:              os.Getenv("LOGTALLY_CHAOS_NATS_LOG") == "",
			MaxPayload:         1 << 20,
			JetStreamMaxMemory: 256 << 20,
			JetStreamMaxStore:  4 << 30,
			Cluster:            server.ClusterOpts{Name: "logtally-chaos", Host: "127.0.0.1", Port: clusterPorts[i]},
			Routes:             routes,
			TLS:                true,
			TLSConfig:          tlsCfg,
			Username:           c.User,
			Password:           c.Password,
		}
		c.Nodes = append(c.Nodes, node)
	}
	for i := range c.Nodes {
		c.start(t, i, false)
	}
	t.Cleanup(func() {
		for i := range c.Nodes {
			c.Stop(i)
		}
	})
	c.WaitReady(t, 60*time.Second)
	return c
}

// start creates a server from a copy of the node's options (NewServer
// fills in defaults, so the template must stay untouched).
func (c *Cluster) start(t testing.TB, i int, wait bool) {
	t.Helper()
	c.mu.Lock()
	node := c.Nodes[i]
	if node.srv != nil {
		c.mu.Unlock()
		t.Fatalf("node %s is already running", node.Name)
	}
	opts := node.opts
	opts.Routes = append([]*url.URL(nil), node.opts.Routes...)
	s, err := server.NewServer(&opts)
	if err != nil {
		c.mu.Unlock()
		t.Fatalf("new nats node %s: %v", node.Name, err)
	}
	if !opts.NoLog {
		s.ConfigureLogger()
	}
	node.srv = s
	c.mu.Unlock()
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		t.Fatalf("nats node %s not ready", node.Name)
	}
	if wait {
		c.WaitReady(t, 60*time.Second)
	}
}

// Start starts node i again on its ports and store directory and waits
// until the cluster has a meta leader and every running node is current.
func (c *Cluster) Start(t testing.TB, i int) { c.start(t, i, true) }

// StartAll starts every stopped node, then waits for the cluster.
func (c *Cluster) StartAll(t testing.TB) {
	for i, n := range c.Nodes {
		if !n.Running() {
			c.start(t, i, false)
		}
	}
	c.WaitReady(t, 90*time.Second)
}

// Stop shuts node i down (its clients see the connection drop; the store
// stays on disk). It is a no-op for a stopped node.
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	s := c.Nodes[i].srv
	c.Nodes[i].srv = nil
	c.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// StopAll shuts every node down.
func (c *Cluster) StopAll() {
	var wg sync.WaitGroup
	for i := range c.Nodes {
		wg.Add(1)
		go func() { defer wg.Done(); c.Stop(i) }()
	}
	wg.Wait()
}

// URLs is the comma-separated client URL list of every node.
func (c *Cluster) URLs() string {
	var u []string
	for _, n := range c.Nodes {
		u = append(u, n.URL())
	}
	return strings.Join(u, ",")
}

// WaitReady waits until a running node is the meta leader, sees every
// node as a peer, and every running node is current.
func (c *Cluster) WaitReady(t testing.TB, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		var running []*server.Server
		for _, n := range c.Nodes {
			if n.srv != nil {
				running = append(running, n.srv)
			}
		}
		c.mu.Unlock()
		ok := false
		for _, s := range running {
			if s.JetStreamIsLeader() && len(s.JetStreamClusterPeers()) == len(c.Nodes) {
				ok = true
			}
		}
		for _, s := range running {
			ok = ok && s.JetStreamIsCurrent()
		}
		if ok {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("nats cluster not ready within %s", timeout)
}

// Index returns the index of the node named name, or -1.
func (c *Cluster) Index(name string) int {
	for i, n := range c.Nodes {
		if n.Name == name {
			return i
		}
	}
	return -1
}

// Connect opens a JetStream client on every node's URL; it closes when the
// test ends.
func (c *Cluster) Connect(t testing.TB) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(c.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond),
		nats.UserInfo(c.User, c.Password), nats.RootCAs(c.CAFile))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return js
}

// StreamLeader returns the index of the node leading stream's Raft group.
func (c *Cluster) StreamLeader(t testing.TB, js jetstream.JetStream, stream string) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		s, err := js.Stream(ctx, stream)
		if err == nil {
			var info *jetstream.StreamInfo
			info, err = s.Info(ctx)
			if err == nil && info.Cluster != nil && info.Cluster.Leader != "" {
				cancel()
				if i := c.Index(info.Cluster.Leader); i >= 0 {
					return i
				}
				t.Fatalf("stream %s led by unknown server %q", stream, info.Cluster.Leader)
			}
		}
		cancel()
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("no leader for stream %s: %v", stream, last)
	return -1
}
