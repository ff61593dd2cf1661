package bouncers

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/logtally/logtally/internal/apptest"
)

type streamAnswer struct {
	New, Deleted []struct {
		ID    uint64
		Value string
	}
}

func poll(t *testing.T, base, key string, startup bool) streamAnswer {
	t.Helper()
	req, _ := http.NewRequest("GET", fmt.Sprintf("%s/v1/decisions/stream?startup=%v", base, startup), nil)
	req.Header.Set("X-Api-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("poll %s: %s", base, resp.Status)
	}
	var a streamAnswer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		t.Fatal(err)
	}
	return a
}

func values(a streamAnswer) (news, dels string) {
	var n, d []string
	for _, x := range a.New {
		n = append(n, x.Value)
	}
	for _, x := range a.Deleted {
		d = append(d, x.Value)
	}
	return strings.Join(n, ","), strings.Join(d, ",")
}

func ban(t *testing.T, base, ip string) uint64 {
	t.Helper()
	resp, err := http.Post(base+"/api/v1/decisions", "application/json", strings.NewReader(`{"key":"`+ip+`","duration":"1h","reason":"test"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d struct{ ID uint64 }
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil || resp.StatusCode/100 != 2 {
		t.Fatalf("ban %s: %s %v", ip, resp.Status, err)
	}
	return d.ID
}

// A bouncer whose polls alternate between two query replicas (a Service
// in front of a Deployment) is answered from where it left off on either:
// the cursor lives in the decisions bucket, not in one process.
func TestBouncerCursorAcrossReplicas(t *testing.T) {
	const key = "replica-bouncer-key"
	a := apptest.Start(t, "-decisions.bouncer-key="+key, "-nats.embedded-listen=127.0.0.1:0")
	b := apptest.Start(t, "-target=query", "-nats.url="+a.EmbeddedNATSURL(), "-decisions.bouncer-key="+key)
	baseA, baseB := "http://"+a.HTTPAddr().String(), "http://"+b.HTTPAddr().String()

	x := ban(t, baseA, "192.0.2.10")
	if n, d := values(poll(t, baseA, key, true)); n != "192.0.2.10" || d != "" {
		t.Fatalf("startup on A: new %q deleted %q", n, d)
	}
	ban(t, baseA, "192.0.2.11")
	req, _ := http.NewRequest("DELETE", fmt.Sprintf("%s/api/v1/decisions/%d", baseA, x), nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("unban: %v %v", resp, err)
	}
	// B has not answered this bouncer before: still a delta, not startup.
	apptest.Eventually(t, "B to serve the delta", 10*time.Second, func() bool {
		n, d := values(poll(t, baseB, key, false))
		if n == "" && d == "" {
			return false // B's index had not caught up: nothing yet, cursor kept
		}
		if n != "192.0.2.11" || d != "192.0.2.10" {
			t.Fatalf("delta on B: new %q deleted %q, want new 192.0.2.11 deleted 192.0.2.10", n, d)
		}
		return true
	})
	if n, d := values(poll(t, baseA, key, false)); n != "" || d != "" {
		t.Fatalf("A after B: new %q deleted %q, want nothing", n, d)
	}
}

// The plain blocklist holds one line per banned address or network, in
// address order, and follows bans and unbans.
func TestBlocklist(t *testing.T) {
	a := apptest.Start(t)
	base := "http://" + a.HTTPAddr().String()
	list := func() string {
		resp, err := http.Get(base + "/api/v1/decisions/blocklist.txt")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || !strings.HasPrefix(ct, "text/plain") {
			t.Fatalf("blocklist: %s %s", resp.Status, ct)
		}
		return string(b)
	}
	if l := list(); l != "" {
		t.Fatalf("empty blocklist: %q", l)
	}
	ban(t, base, "2001:db8:9::/48")
	x := ban(t, base, "198.18.0.0/24")
	ban(t, base, "192.0.2.10")
	want := "192.0.2.10\n198.18.0.0/24\n2001:db8:9::/48\n"
	apptest.Eventually(t, "the blocklist", 10*time.Second, func() bool { return list() == want })
	req, _ := http.NewRequest("DELETE", fmt.Sprintf("%s/api/v1/decisions/%d", base, x), nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("unban: %v %v", resp, err)
	}
	apptest.Eventually(t, "the blocklist after the unban", 10*time.Second, func() bool { return list() == "192.0.2.10\n2001:db8:9::/48\n" })
}
