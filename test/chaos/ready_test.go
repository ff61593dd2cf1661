package chaos

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestReadyzMeansServing checks that a stage whose /readyz answers 200
// serves its API: an ingest process that says it is ready must accept
// POST /api/v1/ingest (not 404). Found by this package's harness.
func TestReadyzMeansServing(t *testing.T) {
	c := StartCluster(t)
	bin := Binary(t)
	for round := 0; round < 3; round++ {
		s := &Stage{Name: "ingest", Target: "ingest", bin: bin, t: t,
			HTTPAddr: FreeAddr(t), GRPCAddr: FreeAddr(t), TCPAddr: FreeAddr(t), SyslogAddr: FreeAddr(t),
			LogPath: t.TempDir() + "/ingest.log", Grace: 30 * time.Second, env: c.StageEnv}
		s.args = append([]string{"-target=ingest", "-nats.url=" + c.URLs(), "-nats.replicas=3",
			"-http.addr=" + s.HTTPAddr, "-grpc.addr=" + s.GRPCAddr,
			"-ingest.tcp.addr=" + s.TCPAddr, "-ingest.syslog.addr=" + s.SyslogAddr}, DefaultStageFlags...)
		s.args = append(s.args, c.StageFlags...)
		startNoWait(t, s)
		deadline := time.Now().Add(60 * time.Second)
		for {
			resp, err := http.Get(s.Base() + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("never ready\n%s", s.Tail(20))
			}
			time.Sleep(5 * time.Millisecond)
		}
		resp, err := http.Post(s.Base()+"/api/v1/ingest?source=ready", "text/plain", strings.NewReader("203.0.113.1 - - [24/Nov/2026:10:00:00 +0000] \"GET / HTTP/1.1\" 200 1 \"-\" \"-\"\n"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound {
			t.Fatalf("round %d: /readyz answered 200 but POST /api/v1/ingest answered 404: readiness is reported before the components start\n%s", round, s.Tail(10))
		}
		s.Kill(t)
	}
}

func startNoWait(t *testing.T, s *Stage) {
	t.Cleanup(func() {
		if !s.Exited() {
			_ = s.signal(9)
			s.wait(10 * time.Second)
		}
	})
	s.launch(t)
}
