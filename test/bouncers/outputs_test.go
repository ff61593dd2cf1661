package bouncers

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/logtally/logtally/internal/apptest"
)

// clientFrom is an HTTP client whose connections come from source (any
// 127.0.0.0/8 address is the loopback on Linux).
func clientFrom(source string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// A ban by hand reaches a real nginx through -decisions.nginx-file: after
// a reload nginx answers 403 to the banned client and 200 to the others,
// and after the unban (and a reload) 200 again.
func TestNginxGeoFile(t *testing.T) {
	nginx := need(t, "nginx")
	dir := t.TempDir()
	geo := filepath.Join(dir, "banned.conf")
	a := apptest.Start(t, "-decisions.nginx-file="+geo)
	base := "http://" + a.HTTPAddr().String()
	apptest.Eventually(t, "the geo file", 10*time.Second, func() bool { _, err := os.Stat(geo); return err == nil })

	port := freePort(t)
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events {}
http {
  access_log off;
  client_body_temp_path %[1]s/body; proxy_temp_path %[1]s/proxy; fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi; scgi_temp_path %[1]s/scgi;
  geo $logtally_banned { default 0; include %[2]s; }
  server {
    listen 127.0.0.1:%[3]d;
    location / {
      if ($logtally_banned) { return 403; }
      return 200 "ok\n";
    }
  }
}
`, dir, geo, port)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(nginx, "-c", conf, "-p", dir)
	out, _ := os.Create(filepath.Join(dir, "nginx.out"))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	status := func(source string) int {
		resp, err := clientFrom(source).Get(url)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	apptest.Eventually(t, "nginx to serve", 10*time.Second, func() bool { return status("127.0.0.2") == 200 })
	reload := func() {
		t.Helper()
		if out, err := exec.Command(nginx, "-c", conf, "-p", dir, "-s", "reload").CombinedOutput(); err != nil {
			t.Fatalf("nginx -s reload: %v\n%s", err, out)
		}
	}

	resp, err := http.Post(base+"/api/v1/decisions", "application/json", strings.NewReader(`{"key":"127.0.0.2","duration":"1h","reason":"nginx test"}`))
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("ban: %v %v", resp, err)
	}
	var d struct{ ID uint64 }
	_ = json.NewDecoder(resp.Body).Decode(&d)
	resp.Body.Close()
	apptest.Eventually(t, "the geo file to hold the ban", 10*time.Second, func() bool {
		b, _ := os.ReadFile(geo)
		return strings.Contains(string(b), "127.0.0.2/32 1;")
	})
	reload()
	apptest.Eventually(t, "nginx to refuse the banned client", 10*time.Second, func() bool { return status("127.0.0.2") == 403 })
	if got := status("127.0.0.3"); got != 200 {
		t.Fatalf("another client got %d, want 200", got)
	}

	req, _ := http.NewRequest("DELETE", fmt.Sprintf("%s/api/v1/decisions/%d", base, d.ID), nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("unban: %v %v", resp, err)
	}
	apptest.Eventually(t, "the geo file to drop the ban", 10*time.Second, func() bool {
		b, _ := os.ReadFile(geo)
		return !strings.Contains(string(b), "127.0.0.2")
	})
	reload()
	apptest.Eventually(t, "nginx to serve the unbanned client", 10*time.Second, func() bool { return status("127.0.0.2") == 200 })
}

// The webhook gets each new decision once; a receiver that fails and then
// hangs never delays detection: the decisions are made and served while
// it holds the first request.
func TestWebhookNeverDelaysDetection(t *testing.T) {
	gate := make(chan struct{}) // closed once detection is shown not to wait
	var mu sync.Mutex
	got := map[string]int{}
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		if n == 1 {
			http.Error(w, "down for a moment", http.StatusInternalServerError)
			return
		}
		<-gate
		body, _ := io.ReadAll(r.Body)
		var ev struct{ Decision struct{ Key string } }
		_ = json.Unmarshal(body, &ev)
		mu.Lock()
		got[ev.Decision.Key]++
		mu.Unlock()
	}))
	defer srv.Close()
	var closeGate sync.Once
	defer closeGate.Do(func() { close(gate) }) // before Close, which waits for held requests

	dir := t.TempDir()
	rules := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rules, []byte(rulesYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	a := apptest.Start(t, "-rules.file="+rules, "-decisions.webhook-url="+srv.URL, "-detector.interval=200ms")
	base := "http://" + a.HTTPAddr().String()
	ips := []string{"203.0.113.1", "203.0.113.2", "203.0.113.3"}
	for _, ip := range ips {
		apptest.SendAccessLines(t, a.Ingest.TCPAddr(), time.Now(), 60, ip)
	}
	apptest.Eventually(t, "three decisions while the webhook hangs", 30*time.Second, func() bool { return len(getDecisions(t, base)) == 3 })
	closeGate.Do(func() { close(gate) })
	apptest.Eventually(t, "the webhook to receive every decision", 60*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 3
	})
	mu.Lock()
	defer mu.Unlock()
	for _, ip := range ips {
		if got[ip+"/32"] != 1 {
			t.Fatalf("webhook got %v, want each of %v once", got, ips)
		}
	}
}
