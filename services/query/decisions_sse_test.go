package query

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// nextEvent returns the type ("" for the default) and data of the next event.
func (r *sseReader) nextEvent(t *testing.T) (string, []byte) {
	t.Helper()
	var event string
	var data []byte
	for r.sc.Scan() {
		line := r.sc.Text()
		switch {
		case line == "":
			if data != nil {
				return event, data
			}
			event = ""
		case strings.HasPrefix(line, "event: "):
			event = line[len("event: "):]
		case strings.HasPrefix(line, "data: "):
			data = append(data, line[len("data: "):]...)
		}
	}
	t.Fatalf("stream ended: %v", r.sc.Err())
	return "", nil
}

// nextDecisions skips overview events up to the next decisions event.
func (r *sseReader) nextDecisions(t *testing.T) decisionsEventJSON {
	t.Helper()
	for {
		ev, data := r.nextEvent(t)
		if ev != "decisions" {
			continue
		}
		var d decisionsEventJSON
		if err := json.Unmarshal(data, &d); err != nil {
			t.Fatalf("decisions event %s: %v", data, err)
		}
		return d
	}
}

func (e *env) ban(t *testing.T, key, duration, reason string) decisionJSON {
	t.Helper()
	body, _ := json.Marshal(banRequest{Key: key, Duration: duration, Reason: reason})
	resp, err := http.Post(e.http.URL+"/api/v1/decisions", "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d decisionJSON
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("ban %s: %d %v", key, resp.StatusCode, err)
	}
	return d
}

// The overview stream with decisions=1 pushes the active decisions at once
// and on every change: a ban, an unban, an expiry and a change of the rules
// file's mode; no event per second in between.
func TestSSEOverviewDecisions(t *testing.T) {
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	write := func(mode string) {
		t.Helper()
		y := "mode: " + mode + "\nrules:\n  - name: flood\n    range: 1m\n    threshold: 10\n    ban: 10m\n"
		// Atomically: a reload never reads it half written.
		if err := os.WriteFile(rules+".tmp", []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(rules+".tmp", rules); err != nil {
			t.Fatal(err)
		}
	}
	write("simulate")
	e := newEnv(t, 2, func(c *Config) { c.RulesFile = rules })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ov := openSSE(t, ctx, e.http.URL+"/api/v1/watch/overview?last=15m&step=1m&decisions=1")

	d := ov.nextDecisions(t)
	if d.Mode != "simulate" || !d.RulesFile || d.Total != 0 || d.Items == nil || len(d.Items) != 0 {
		t.Fatalf("first decisions event: %+v", d)
	}
	if _, err := time.Parse(time.RFC3339Nano, d.Now); err != nil {
		t.Fatalf("now %q: %v", d.Now, err)
	}

	reason := `<img src=x onerror="alert(1)"> & co`
	b := e.ban(t, "203.0.113.7", "10m", reason)
	d = ov.nextDecisions(t)
	if d.Total != 1 || len(d.Items) != 1 {
		t.Fatalf("after the ban: %+v", d)
	}
	it := d.Items[0]
	if it.ID != b.ID || it.Key != "203.0.113.7/32" || it.Rule != "manual" || it.Origin != "manual" || it.Reason != reason || it.Simulated ||
		it.LeftSeconds <= 590 || it.LeftSeconds > 600 || !it.Until.After(it.Created) {
		t.Fatalf("pushed decision: %+v", it)
	}

	// A short ban expires: the server's expiry marker is pushed.
	short := e.ban(t, "2001:db8::/64", "2s", "")
	if d = ov.nextDecisions(t); d.Total != 2 || d.Items[0].ID != short.ID || d.Items[0].Key != "2001:db8::/64" {
		t.Fatalf("after the second ban: %+v", d)
	}
	// (An event per second would show up here, still with both.)
	if d = ov.nextDecisions(t); d.Total != 1 || d.Items[0].ID != b.ID {
		t.Fatalf("after the expiry: %+v", d)
	}
	t.Logf("expiry pushed %v after the ban ended", time.Since(short.Until).Round(time.Millisecond))

	// The rules file's mode changes.
	write("enforce")
	if d = ov.nextDecisions(t); d.Mode != "enforce" || d.Total != 1 {
		t.Fatalf("after the mode change: %+v", d)
	}

	// Unban.
	req, _ := http.NewRequest(http.MethodDelete, fmt.Sprintf("%s/api/v1/decisions/%d", e.http.URL, b.ID), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("unban: %d", resp.StatusCode)
	}
	if d = ov.nextDecisions(t); d.Total != 0 || len(d.Items) != 0 {
		t.Fatalf("after the unban: %+v", d)
	}
}

// Without a rules file the event says so; the mode is the API's default.
func TestSSEOverviewDecisionsNoRulesFile(t *testing.T) {
	e := newEnv(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ov := openSSE(t, ctx, e.http.URL+"/api/v1/watch/overview?decisions=true")
	if d := ov.nextDecisions(t); d.Mode != "enforce" || d.RulesFile || d.Total != 0 {
		t.Fatalf("decisions event: %+v", d)
	}
}
