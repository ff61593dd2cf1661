// Package pgtest starts a real PostgreSQL server (Debian's postgresql
// package) for a test: initdb into a fresh directory, pg_ctl start on a
// free port with its socket in that directory, stopped and removed when
// the test ends. As root the server runs as user postgres, which initdb
// requires. With CI or LOGTALLY_REQUIRE_POSTGRES=1 set, a missing server
// fails the test instead of skipping it.
package pgtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
)

// Server is one running PostgreSQL.
type Server struct {
	Dir  string
	Port int
	bin  string
	t    testing.TB
}

// DSN is the connection string of database postgres as user postgres.
func (s *Server) DSN() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.Port)
}

// bindir finds the newest /usr/lib/postgresql/<version>/bin with initdb.
func bindir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(dirs) == 0 {
		if p, err := exec.LookPath("initdb"); err == nil {
			return filepath.Dir(p), nil
		}
		return "", fmt.Errorf("no PostgreSQL server: install Debian's postgresql package (apt-get install postgresql)")
	}
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(dirs[i]))))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(dirs[j]))))
		return vi > vj
	})
	return filepath.Dir(dirs[0]), nil
}

// Start runs a PostgreSQL server for the test.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := bindir()
	if err != nil {
		if os.Getenv("CI") != "" || os.Getenv("LOGTALLY_REQUIRE_POSTGRES") == "1" {
			t.Fatalf("%v (required here: CI or LOGTALLY_REQUIRE_POSTGRES=1 is set)", err)
		}
		t.Skip(err)
	}
	// Not under t.TempDir: its parents are private to root, and the
	// server runs as postgres.
	dir, err := os.MkdirTemp("", "logtally-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	s := &Server{Dir: filepath.Join(dir, "data"), Port: freePort(t), bin: bin, t: t}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root needs user postgres (created by Debian's postgresql package): %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	s.run("initdb", "-D", s.Dir, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50", s.Port, s.Dir)
	s.run("pg_ctl", "-D", s.Dir, "-o", opts, "-w", "-t", "60", "-l", filepath.Join(dir, "server.log"), "start")
	t.Cleanup(func() {
		cmd := s.command("pg_ctl", "-D", s.Dir, "-m", "immediate", "-w", "stop")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Logf("pg_ctl stop: %v\n%s", err, out)
		}
	})
	return s
}

// command runs a server program, as postgres when this process is root.
func (s *Server) command(name string, args ...string) *exec.Cmd {
	prog := filepath.Join(s.bin, name)
	if os.Geteuid() == 0 {
		return exec.Command("runuser", append([]string{"-u", "postgres", "--", prog}, args...)...)
	}
	return exec.Command(prog, args...)
}

func (s *Server) run(name string, args ...string) {
	s.t.Helper()
	if out, err := s.command(name, args...).CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(filepath.Dir(s.Dir), "server.log"))
		s.t.Fatalf("%s: %v\n%s\n%s", name, err, out, log)
	}
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
