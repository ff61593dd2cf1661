package e2e

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/logtally/logtally/internal/cli"
)

// lockedBuffer is a bytes.Buffer a command writes while the test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestDecisionsCLIAgainstAllInOne: `logtally decisions watch` (gRPC)
// prints what `decisions ban` and `unban` (HTTP) do and the expiry of a
// short ban, and keeps trying when the server goes away.
func TestDecisionsCLIAgainstAllInOne(t *testing.T) {
	a := startApp(t, "all", newConfig(t, "-data.dir="+t.TempDir()))
	base := "http://" + a.HTTPAddr().String()
	run := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		if err := cli.Decisions(context.Background(), append(args, "--addr", base), &out, &errOut); err != nil {
			t.Fatalf("decisions %v: %v %s", args, err, errOut.String())
		}
		return out.String()
	}
	first := run("ban", "203.0.113.60", "--duration", "1h", "--reason", "before")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut lockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- cli.Decisions(ctx, []string{"watch", "--grpc-addr", a.Query.GRPCAddr().String()}, &out, &errOut)
	}()
	waitOutput := func(what string, re *regexp.Regexp) []string {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			if m := re.FindStringSubmatch(out.String()); m != nil {
				return m
			}
			if time.Now().After(deadline) {
				t.Fatalf("watch output lacks %s:\n%s\nstderr: %s", what, out.String(), errOut.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	id := func(s string) string { return regexp.MustCompile(`decision (\d+)`).FindStringSubmatch(s)[1] }
	waitOutput("the snapshot", regexp.MustCompile(`snapshot id=`+id(first)+` key=203\.0\.113\.60/32 rule=manual until=\S+ reason="before"\n\S+ end      revision=\d+\n`))

	short := id(run("ban", "203.0.113.61", "--duration", "2s"))
	waitOutput("the new short ban", regexp.MustCompile(`new      id=`+short+` key=203\.0\.113\.61/32`))
	deadline := time.Now().Add(10 * time.Second)
	for { // unban once the server's index has the decision
		var o, e bytes.Buffer
		err := cli.Decisions(context.Background(), []string{"unban", id(first), "--addr", base}, &o, &e)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("unban: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitOutput("the unban and the expiry", regexp.MustCompile(`(?s)deleted  id=`+id(first)+` .*expired  id=`+short+` `))
	for _, s := range []string{"snapshot id=" + id(first), "new      id=" + short, "deleted  id=" + id(first), "expired  id=" + short} {
		if n := strings.Count(out.String(), s); n != 1 {
			t.Fatalf("%q %d times:\n%s", s, n, out.String())
		}
	}

	stopApp(t, a)
	deadline = time.Now().Add(20 * time.Second)
	for !strings.Contains(errOut.String(), "reconnecting") {
		if time.Now().After(deadline) {
			t.Fatalf("watch did not notice the stop: %s", errOut.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("watch: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watch did not end with its context")
	}
}
