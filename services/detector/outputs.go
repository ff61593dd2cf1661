package detector

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/logtally/logtally/internal/decisions"
)

// writeNginxGeo keeps path an nginx geo include of the served decisions:
// one "<prefix> 1;" line each, written to a temporary file and renamed, so
// that nginx never reads half a file. Use it as
//
//	geo $logtally_banned { default 0; include /etc/nginx/logtally-banned.conf; }
//	server { if ($logtally_banned) { return 403; } … }
//
// and reload nginx when the file changes (nginx reads includes at reload).
func writeNginxGeo(path string, ds []decisions.Decision) error {
	var b strings.Builder
	b.WriteString("# logtally decisions (generated; do not edit)\n")
	seen := map[string]bool{}
	for _, d := range ds {
		if !seen[d.Key] {
			seen[d.Key] = true
			fmt.Fprintf(&b, "%s 1;\n", d.Key)
		}
	}
	if old, err := os.ReadFile(path); err == nil && string(old) == b.String() {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".logtally-geo-*")
	if err != nil {
		return fmt.Errorf("nginx geo file %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(b.String()); err != nil {
		tmp.Close()
		return fmt.Errorf("nginx geo file %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("nginx geo file %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("nginx geo file %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("nginx geo file %s: %w", path, err)
	}
	return nil
}

// outputs keeps the file outputs current: on every change of the
// decisions and every refresh interval (decisions expire without a
// change event reaching every process at the same instant).
func (s *Service) outputs(ctx context.Context) {
	if s.cfg.NginxFile == "" {
		return
	}
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		if err := writeNginxGeo(s.cfg.NginxFile, s.store.Active(false)); err != nil {
			s.m.outputFailures.WithLabelValues("nginx").Inc()
			s.log.Warn("write nginx geo file", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-s.store.Changed():
		case <-tick.C:
		}
	}
}

// webhookQueue bounds the decisions waiting for the webhook: a slow or dead
// receiver must never delay detection, so past it they are dropped (and
// counted).
const webhookQueue = 4096

// webhook posts each decision this replica made to the URL, with retries
// and exponential backoff (1 s doubling to 1 min, 10 attempts).
func (s *Service) webhook(ctx context.Context) {
	client := &http.Client{Timeout: 10 * time.Second}
	for {
		var d decisions.Decision
		select {
		case <-ctx.Done():
			return
		case d = <-s.hooks:
		}
		body, _ := json.Marshal(map[string]any{"event": "decision", "decision": d})
		backoff := time.Second
		for attempt := 1; ; attempt++ {
			err := post(ctx, client, s.cfg.WebhookURL, body)
			if err == nil {
				s.m.webhook.WithLabelValues("ok").Inc()
				break
			}
			if attempt == 10 || ctx.Err() != nil {
				s.m.webhook.WithLabelValues("failed").Inc()
				s.log.Error("webhook: giving up on a decision", "id", d.ID, "attempts", attempt, "error", err)
				break
			}
			s.m.webhook.WithLabelValues("retry").Inc()
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Minute)
		}
	}
}

func post(ctx context.Context, c *http.Client, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("webhook answered %s", resp.Status)
	}
	return nil
}

// notify queues d for the webhook without ever blocking detection.
func (s *Service) notify(d decisions.Decision) {
	if s.cfg.WebhookURL == "" {
		return
	}
	select {
	case s.hooks <- d:
	default:
		s.m.webhook.WithLabelValues("dropped").Inc()
	}
}
