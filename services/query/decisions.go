package query

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/logtally/logtally/internal/decisions"
	"github.com/logtally/logtally/internal/obs"
	"github.com/logtally/logtally/internal/windows"
)

// Decisions over HTTP: the API (list, ban by hand, unban, blocklist) and a
// CrowdSec LAPI-compatible bouncer API, so that the bouncers operators
// already run (crowdsec-firewall-bouncer, crowdsec-custom-bouncer, …)
// enforce logtally's decisions.
//
//	GET    /api/v1/decisions                  active decisions (simulated ones flagged); rule=, contains=, within=, simulated=
//	POST   /api/v1/decisions                  {"key","duration","reason"}: a ban by hand
//	DELETE /api/v1/decisions/{id}             unban
//	GET    /api/v1/decisions/blocklist.txt    one IP or CIDR a line
//	GET    /v1/decisions/stream?startup=      bouncers: new and deleted since the last poll (X-Api-Key)
//	GET    /v1/decisions?ip=                  bouncers: decisions covering an IP (X-Api-Key)

func (s *Service) registerDecisions(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/decisions", s.handleDecisions)
	mux.HandleFunc("POST /api/v1/decisions", s.handleBan)
	mux.HandleFunc("DELETE /api/v1/decisions/{id}", s.handleUnban)
	mux.HandleFunc("GET /api/v1/decisions/blocklist.txt", s.handleBlocklist)
	mux.HandleFunc("GET /v1/decisions/stream", s.bouncer(s.handleBouncerStream))
	mux.HandleFunc("GET /v1/decisions", s.bouncer(s.handleBouncerDecisions))
}

// decisionJSON is a decision as the API answers it.
type decisionJSON struct {
	decisions.Decision
	LeftSeconds float64 `json:"left_seconds"`
}

func (s *Service) handleDecisions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	simulated := true
	if v := q.Get("simulated"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			obs.WriteError(w, http.StatusBadRequest, fmt.Sprintf("simulated %q: want true or false", v))
			return
		}
		simulated = b
	}
	f, err := newDecisionFilter(q.Get("rule"), q.Get("contains"), q.Get("within"), simulated)
	if err != nil {
		writeDecisionError(w, err)
		return
	}
	now := s.now()
	items := []decisionJSON{}
	for _, d := range s.listDecisions(f) {
		items = append(items, decisionJSON{d, d.Left(now).Seconds()})
	}
	obs.WriteJSON(w, http.StatusOK, map[string]any{"mode": s.mode(), "items": items})
}

// mode is the rules file's mode ("enforce" without one).
func (s *Service) mode() string {
	if s.rules == nil {
		return "enforce"
	}
	return string(s.rules.Current().Mode)
}

// decisionFilter selects decisions: for GET /api/v1/decisions,
// ListDecisions and WatchDecisions. Zero fields select everything.
type decisionFilter struct {
	rule      string
	contains  netip.Prefix // the key contains it (bans it)
	within    netip.Prefix // the key lies inside it
	simulated bool         // simulated decisions too
}

// newDecisionFilter checks the parameters of a filter.
func newDecisionFilter(rule, contains, within string, simulated bool) (decisionFilter, error) {
	f := decisionFilter{rule: rule, simulated: simulated}
	var err error
	if contains != "" {
		if f.contains, err = parseKey(contains); err != nil {
			return f, windows.Invalidf("contains: %v", err)
		}
	}
	if within != "" {
		if f.within, err = parseKey(within); err != nil {
			return f, windows.Invalidf("within: %v", err)
		}
	}
	return f, nil
}

func (f decisionFilter) match(d *decisions.Decision) bool {
	if (d.Simulated && !f.simulated) || (f.rule != "" && d.Rule != f.rule) {
		return false
	}
	key := d.Prefix()
	return (!f.contains.IsValid() || covers(key, f.contains)) && (!f.within.IsValid() || covers(f.within, key))
}

// covers reports whether prefix a contains all of prefix b.
func covers(a, b netip.Prefix) bool {
	return a.IsValid() && b.IsValid() && a.Addr().Is4() == b.Addr().Is4() && a.Bits() <= b.Bits() && a.Contains(b.Addr())
}

// listDecisions returns the active decisions f selects, newest first.
func (s *Service) listDecisions(f decisionFilter) []decisions.Decision {
	all := s.decisions.Active(f.simulated)
	out := all[:0]
	for i := range all {
		if f.match(&all[i]) {
			out = append(out, all[i])
		}
	}
	return out
}

type banRequest struct {
	Key      string `json:"key"`
	Duration string `json:"duration"`
	Reason   string `json:"reason"`
}

func (s *Service) handleBan(w http.ResponseWriter, r *http.Request) {
	var req banRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		obs.WriteError(w, http.StatusBadRequest, "body: "+err.Error())
		return
	}
	d, err := time.ParseDuration(req.Duration)
	if err != nil {
		d = -1 // refused by ban, with the range
	}
	by := "api"
	if r.RemoteAddr != "" {
		by = "api " + r.RemoteAddr
	}
	created, err := s.ban(r.Context(), req.Key, d, fmt.Sprintf("%q", req.Duration), req.Reason, by)
	if err != nil {
		writeDecisionError(w, err)
		return
	}
	obs.WriteJSON(w, http.StatusCreated, decisionJSON{created, d.Seconds()})
}

// Bans by hand last from minBan to maxBan.
const (
	minBan = time.Second
	maxBan = 365 * 24 * time.Hour
)

// ban makes a decision by hand, for POST /api/v1/decisions and
// CreateDecision: key is an address or a prefix, d the ban (shown as
// dText when refused), by the caller. Its errors are for decisionCodes.
func (s *Service) ban(ctx context.Context, keyText string, d time.Duration, dText, reason, by string) (decisions.Decision, error) {
	key, err := parseKey(keyText)
	if err != nil {
		return decisions.Decision{}, windows.Invalidf("%v", err)
	}
	if d < minBan || d > maxBan {
		return decisions.Decision{}, windows.Invalidf("duration %s: want a Go duration between 1s and 8760h", dText)
	}
	if s.rules != nil && s.rules.Current().Allowed(key) {
		return decisions.Decision{}, fmt.Errorf("%s: %w", key, decisions.ErrAllowed)
	}
	now := s.now().UTC()
	created, err := s.decisions.Create(ctx, decisions.Decision{
		Rule: decisions.ManualRule, Key: key.String(), Origin: "manual", Reason: reason,
		By: by, Created: now, Until: now.Add(d),
	}, d)
	if errors.Is(err, decisions.ErrActive) {
		return decisions.Decision{}, &decisionError{fmt.Sprintf("%s is banned by hand already; delete that decision first", key), err}
	}
	return created, err
}

// unban removes decision id, for DELETE /api/v1/decisions/{id} and
// DeleteDecision.
func (s *Service) unban(ctx context.Context, id uint64, by string) (decisions.Decision, error) {
	d, err := s.decisions.Delete(ctx, id, by)
	if errors.Is(err, decisions.ErrNotFound) {
		return d, fmt.Errorf("decision %d: %w", id, err)
	}
	return d, err
}

// decisionError is an error answered with msg, matching its cause err.
type decisionError struct {
	msg string
	err error
}

func (e *decisionError) Error() string { return e.msg }
func (e *decisionError) Unwrap() error { return e.err }

// decisionCodes maps the errors of the decisions API to an HTTP status
// and a gRPC code: the same answer on both transports.
func decisionCodes(err error) (int, codes.Code) {
	switch {
	case errors.Is(err, windows.ErrInvalidArgument):
		return http.StatusBadRequest, codes.InvalidArgument
	case errors.Is(err, decisions.ErrAllowed):
		return http.StatusForbidden, codes.PermissionDenied
	case errors.Is(err, decisions.ErrActive):
		return http.StatusConflict, codes.AlreadyExists
	case errors.Is(err, decisions.ErrNotFound):
		return http.StatusNotFound, codes.NotFound
	case errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable, codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, codes.DeadlineExceeded
	default: // NATS trouble
		return http.StatusServiceUnavailable, codes.Unavailable
	}
}

func writeDecisionError(w http.ResponseWriter, err error) {
	code, _ := decisionCodes(err)
	obs.WriteError(w, code, err.Error())
}

// parseKey takes an address or a prefix, canonical (masked, unmapped).
func parseKey(s string) (netip.Prefix, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		a = a.Unmap().WithZone("")
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("key %q is neither an IP address nor a CIDR prefix", s)
	}
	if p.Addr().Is4In6() {
		p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
	}
	return p.Masked(), nil
}

func (s *Service) handleUnban(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		obs.WriteError(w, http.StatusBadRequest, fmt.Sprintf("decision id %q is not a number", r.PathValue("id")))
		return
	}
	d, err := s.unban(r.Context(), id, "api "+r.RemoteAddr)
	if err != nil {
		writeDecisionError(w, err)
		return
	}
	obs.WriteJSON(w, http.StatusOK, decisionJSON{d, 0})
}

func (s *Service) handleBlocklist(w http.ResponseWriter, r *http.Request) {
	seen := map[netip.Prefix]bool{}
	var keys []netip.Prefix
	for _, d := range s.decisions.Active(false) {
		if p := d.Prefix(); !seen[p] {
			seen[p] = true
			keys = append(keys, p)
		}
	}
	// In address order, so that a changed list diffs by its changes.
	slices.SortFunc(keys, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	var b strings.Builder
	for _, p := range keys {
		if p.IsSingleIP() {
			b.WriteString(p.Addr().String())
		} else {
			b.WriteString(p.String())
		}
		b.WriteByte('\n')
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte(b.String()))
}

// bouncer authenticates a bouncer by its X-Api-Key, as CrowdSec's LAPI
// does: 403 for a missing or unknown key.
func (s *Service) bouncer(h func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		got := r.Header.Get("X-Api-Key")
		for _, k := range s.cfg.BouncerKeys {
			if got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(k)) == 1 {
				h(w, r, k)
				return
			}
		}
		s.metrics.bouncerDenied.Inc()
		obs.WriteJSON(w, http.StatusForbidden, map[string]string{"message": "access forbidden"})
	}
}

// crowdsecDecision is a decision in CrowdSec's LAPI model.
type crowdsecDecision struct {
	Duration string `json:"duration"`
	ID       uint64 `json:"id"`
	Origin   string `json:"origin"`
	Scenario string `json:"scenario"`
	Scope    string `json:"scope"`
	Type     string `json:"type"`
	Value    string `json:"value"`
}

func toCrowdsec(ds []decisions.Decision, now time.Time) []crowdsecDecision {
	if len(ds) == 0 {
		return nil // CrowdSec answers null for no decisions
	}
	out := make([]crowdsecDecision, 0, len(ds))
	for _, d := range ds {
		left := d.Left(now).Round(time.Second)
		scenario := "logtally/" + d.Rule
		out = append(out, crowdsecDecision{
			Duration: left.String(), ID: d.ID, Origin: "logtally", Scenario: scenario,
			Scope: d.Scope(), Type: "ban", Value: d.Value(),
		})
	}
	return out
}

// cursors serializes the polls of one bouncer key in this process. The
// cursor itself (the revision its last poll was answered at) is in the
// decisions bucket, so that a bouncer whose polls reach another query
// replica is answered from where it left off there too.
type cursors struct {
	mu sync.Mutex
}

// cursorWait bounds how long a poll waits for this process's index to
// reach the revision another replica answered at.
const cursorWait = 2 * time.Second

func (s *Service) handleBouncerStream(w http.ResponseWriter, r *http.Request, key string) {
	startup := r.URL.Query().Get("startup") == "true"
	now := s.now()
	s.cursors.mu.Lock()
	defer s.cursors.mu.Unlock()
	rev, known, err := s.decisions.Cursor(r.Context(), key)
	if err != nil {
		s.log.Warn("bouncer stream", "error", err)
		obs.WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"message": "decisions are not available: " + err.Error()})
		return
	}
	if known && !startup && rev > s.decisions.Rev() {
		ctx, cancel := context.WithTimeout(r.Context(), cursorWait)
		caught := s.decisions.WaitRev(ctx, rev)
		cancel()
		if !caught {
			// Nothing new from here yet; the cursor stays for the next poll.
			obs.WriteJSON(w, http.StatusOK, map[string]any{"new": nil, "deleted": nil})
			return
		}
	}
	var added, deleted []decisions.Decision
	cur := s.decisions.Rev()
	ok := false
	if known && !startup {
		added, deleted, cur, ok = s.decisions.Since(rev)
	}
	if !ok {
		added = s.decisions.Active(false)
		deleted = nil
	}
	if len(deleted) > 0 {
		// Bouncers delete a value (an address from an nftables set), not a
		// decision: as CrowdSec's LAPI does, keep quiet about a deletion
		// while another decision the bouncer was served bans the value.
		banned := map[string]bool{}
		for _, d := range s.decisions.Active(false) {
			if d.ID <= rev {
				banned[d.Value()] = true
			}
		}
		kept := deleted[:0]
		for _, d := range deleted {
			if !banned[d.Value()] {
				kept = append(kept, d)
			}
		}
		deleted = kept
	}
	obs.WriteJSON(w, http.StatusOK, map[string]any{"new": toCrowdsec(added, now), "deleted": toCrowdsec(deleted, now)})
	// After the answer: when the cursor is not written, the next poll
	// repeats these changes, which bouncers apply idempotently; the other
	// order would lose them with a lost answer.
	if err := s.decisions.SetCursor(context.WithoutCancel(r.Context()), key, cur); err != nil {
		s.log.Warn("bouncer stream", "error", err)
	}
}

func (s *Service) handleBouncerDecisions(w http.ResponseWriter, r *http.Request, _ string) {
	ipStr := r.URL.Query().Get("ip")
	if ipStr == "" {
		obs.WriteJSON(w, http.StatusOK, toCrowdsec(s.decisions.Active(false), s.now()))
		return
	}
	ip, err := netip.ParseAddr(ipStr)
	if err != nil {
		obs.WriteJSON(w, http.StatusBadRequest, map[string]string{"message": fmt.Sprintf("ip %q is not an IP address", ipStr)})
		return
	}
	obs.WriteJSON(w, http.StatusOK, toCrowdsec(s.decisions.Lookup(ip), s.now()))
}

// startDecisions opens the decisions store and its index, and fans its
// changes out to the streams (watchDecisions). The rules file, for the
// allow list and the mode, is opened by Start.
func (s *Service) startDecisions(ctx context.Context) error {
	st, err := decisions.Open(ctx, s.deps.NATS.JS)
	if err != nil {
		return err
	}
	if err := st.Watch(s.ctx, nil, nil); err != nil {
		return err
	}
	select {
	case <-st.Ready():
	case <-ctx.Done():
		return ctx.Err()
	}
	s.decisions = st
	s.decStore.Store(st)
	s.cursors = &cursors{}
	s.decChanged = newBroadcast()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			select {
			case <-s.ctx.Done():
				return
			case <-st.Changed():
				s.decChanged.notify()
			}
		}
	}()
	return nil
}

// decisionStore is the store for readers that may run before Start
// opened it (the metrics).
func (s *Service) decisionStore() *decisions.Store { return s.decStore.Load() }

// broadcast wakes every waiter at each notify: the store's Changed has one
// receiver, the streams are many.
type broadcast struct {
	mu sync.Mutex
	ch chan struct{}
}

func newBroadcast() *broadcast { return &broadcast{ch: make(chan struct{})} }

// wait returns a channel closed at the next notify.
func (b *broadcast) wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ch
}

func (b *broadcast) notify() {
	b.mu.Lock()
	defer b.mu.Unlock()
	close(b.ch)
	b.ch = make(chan struct{})
}

// DashboardMaxDecisions bounds the decisions of one stream event, newest
// first; "total" counts them all.
const DashboardMaxDecisions = 500

// decisionsEventJSON is one "decisions" event of the overview stream.
type decisionsEventJSON struct {
	Mode      string         `json:"mode"`       // the rules file's: enforce or simulate
	RulesFile bool           `json:"rules_file"` // false: this query target has no -rules.file (mode is then the API default, enforce)
	Now       string         `json:"now"`        // the server's clock, for clients to count down from until
	Total     int            `json:"total"`      // active decisions, items holds the newest DashboardMaxDecisions
	Items     []decisionJSON `json:"items"`
}

func (s *Service) decisionsEvent() ([]byte, error) {
	now := s.now()
	active := s.decisions.Active(true)
	ev := decisionsEventJSON{Mode: s.mode(), RulesFile: s.rules != nil, Now: now.UTC().Format(time.RFC3339Nano),
		Total: len(active), Items: make([]decisionJSON, 0, min(len(active), DashboardMaxDecisions))}
	for _, d := range active[:min(len(active), DashboardMaxDecisions)] {
		ev.Items = append(ev.Items, decisionJSON{d, d.Left(now).Seconds()})
	}
	return json.Marshal(ev)
}

// watchDecisions sends the active decisions at once and again whenever
// they or the rules file change, at most every windows.MinWatchInterval
// (bursts coalesce). Expiry is a change too: the server's expiry marker
// reaches the index's watch. It returns nil when ctx ends or the service
// stops, or send's error.
func (s *Service) watchDecisions(ctx context.Context, send func([]byte) error) error {
	var lastSent time.Time
	for {
		changed := s.decChanged.wait()
		data, err := s.decisionsEvent()
		if err != nil {
			return err
		}
		if err := send(data); err != nil {
			return err
		}
		lastSent = time.Now()
		select {
		case <-ctx.Done():
			return nil
		case <-s.ctx.Done():
			return nil
		case <-changed:
		}
		if wait := windows.MinWatchInterval - time.Since(lastSent); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-s.ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
		}
	}
}
