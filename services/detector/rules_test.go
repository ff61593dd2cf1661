package detector

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/logtally/logtally/internal/counts"
)

// ---------------------------------------------------------------- parsing

// rtWant is one expected problem of a rules file: its line and a part of
// its message.
type rtWant struct {
	line int
	msg  string
}

// rtErrors returns the RulesErrors of a ParseRules error, in order.
func rtErrors(t *testing.T, err error) []*RulesError {
	t.Helper()
	list := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	}
	out := make([]*RulesError, 0, len(list))
	for _, e := range list {
		var re *RulesError
		if !errors.As(e, &re) {
			t.Fatalf("%T %q is not a *RulesError", e, e)
		}
		out = append(out, re)
	}
	return out
}

// rtRule is a rules file of one rule, x: name, range, threshold and ban on
// lines 2 to 5. A field "key: value" replaces the one of that key in place
// or, when new, is added on line 6, 7, …; "-key" leaves the key out.
func rtRule(fields ...string) string {
	base := []string{"name: x", "range: 1m", "threshold: 300", "ban: 10m"}
	for _, f := range fields {
		k, _, _ := strings.Cut(f, ":")
		done := false
		for i, b := range base {
			bk, _, _ := strings.Cut(b, ":")
			if bk == k {
				base[i], done = f, true
			} else if "-"+bk == k {
				base = append(base[:i], base[i+1:]...)
				done = true
				break
			}
		}
		if !done {
			base = append(base, f)
		}
	}
	return "rules:\n  - " + strings.Join(base, "\n    ") + "\n"
}

func TestRTRuleHelper(t *testing.T) {
	got := rtRule("threshold: 5", "class: 4xx", "-range")
	want := "rules:\n  - name: x\n    threshold: 5\n    ban: 10m\n    class: 4xx\n"
	if got != want {
		t.Fatalf("rtRule = %q, want %q", got, want)
	}
}

func rtPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// rtDefaultRule is rule x of rtRule() as ParseRules fills it in.
func rtDefaultRule() Rule {
	return Rule{Name: "x", Key: KeyIP, Range: time.Minute, Threshold: 300, Ban: 10 * time.Minute,
		Class: counts.Requests, Line: 2,
		Escalation: Escalation{Factor: 2, Max: 7 * 24 * time.Hour, Lookback: 14 * 24 * time.Hour}}
}

func TestParseRulesValid(t *testing.T) {
	const day = 24 * time.Hour
	def := rtDefaultRule
	with := func(f func(r *Rule)) Rule { r := def(); f(&r); return r }
	one := func(r Rule) *Rules { return &Rules{Mode: ModeEnforce, Rules: []Rule{r}} }
	for _, tc := range []struct {
		name string
		data string
		want *Rules
	}{
		{"empty file", "", &Rules{Mode: ModeEnforce}},
		{"comments only", "# no rules yet\n\n   # indented\n\t# tab before a comment is fine\n", &Rules{Mode: ModeEnforce}},
		{"empty document", "---\n", &Rules{Mode: ModeEnforce}},
		{"null document", "~\n", &Rules{Mode: ModeEnforce}},
		{"mode only", "mode: simulate\n", &Rules{Mode: ModeSimulate}},
		{"quoted mode", `mode: "enforce"` + "\n", &Rules{Mode: ModeEnforce}},
		{"empty lists", "allow: []\nrules: []\n", &Rules{Mode: ModeEnforce}},
		{"null lists", "allow:\nrules:\n", &Rules{Mode: ModeEnforce}},
		{"the issue's example", `mode: enforce            # or simulate: decisions are recorded and shown, never served
allow:                   # never banned, also not by hand
  - 198.51.100.0/28
  - "2001:db8:1::/48"
rules:
  - name: http-flood
    key: ip              # ip | prefix (with prefix_v4: 24, prefix_v6: 64)
    range: 1m            # sliding range over the 1m windows, current minute included
    threshold: 300       # a decision when the count is above it
    ban: 10m             # first duration; repeat offenders escalate (factor, max)
    class: requests      # requests | 4xx | 5xx | auth_failure
    escalation: {factor: 2, max: 7d, lookback: 14d}   # optional
`, &Rules{Mode: ModeEnforce, Allow: []netip.Prefix{rtPrefix("198.51.100.0/28"), rtPrefix("2001:db8:1::/48")},
			Rules: []Rule{with(func(r *Rule) { r.Name, r.Line = "http-flood", 6 })}}},
		// Defaults.
		{"defaults: key ip, class requests, escalation 2/7d/14d, no prefix lengths", rtRule(), one(def())},
		{"key prefix defaults to /24 and /64", rtRule("key: prefix"),
			one(with(func(r *Rule) { r.Key, r.PrefixV4, r.PrefixV6 = KeyPrefix, 24, 64 }))},
		{"key prefix with lengths", rtRule("key: prefix", "prefix_v4: 16", "prefix_v6: 48"),
			one(with(func(r *Rule) { r.Key, r.PrefixV4, r.PrefixV6 = KeyPrefix, 16, 48 }))},
		{"key prefix with one length", rtRule("key: prefix", "prefix_v6: 56"),
			one(with(func(r *Rule) { r.Key, r.PrefixV4, r.PrefixV6 = KeyPrefix, 24, 56 }))},
		{"prefix lengths at their limits", rtRule("key: prefix", "prefix_v4: 1", "prefix_v6: 128"),
			one(with(func(r *Rule) { r.Key, r.PrefixV4, r.PrefixV6 = KeyPrefix, 1, 128 }))},
		{"class 4xx", rtRule("class: 4xx"), one(with(func(r *Rule) { r.Class = counts.Status4xx }))},
		{"class 5xx", rtRule("class: 5xx"), one(with(func(r *Rule) { r.Class = counts.Status5xx }))},
		{"class auth_failure", rtRule("class: auth_failure"), one(with(func(r *Rule) { r.Class = counts.AuthFailures }))},
		{"class bytes", rtRule("class: bytes"), one(with(func(r *Rule) { r.Class = counts.Bytes }))},
		{"ban longer than the default max: max = ban, lookback = 2 max", rtRule("ban: 30d"),
			one(with(func(r *Rule) { r.Ban, r.Escalation.Max, r.Escalation.Lookback = 30*day, 30*day, 60*day }))},
		{"escalation factor only", rtRule("escalation: {factor: 1.5}"),
			one(with(func(r *Rule) { r.Escalation.Factor = 1.5 }))},
		{"escalation factor 1 = no escalation", rtRule("escalation: {factor: 1}"),
			one(with(func(r *Rule) { r.Escalation.Factor = 1 }))},
		{"escalation max only: lookback 2 max", rtRule("escalation: {max: 1d}"),
			one(with(func(r *Rule) { r.Escalation.Max, r.Escalation.Lookback = day, 2*day }))},
		{"escalation lookback only", rtRule("escalation: {lookback: 30d}"),
			one(with(func(r *Rule) { r.Escalation.Lookback = 30 * day }))},
		{"default lookback is at least the range", rtRule("range: 24h", "ban: 1m", "escalation: {max: 1h}"),
			one(with(func(r *Rule) {
				r.Range, r.Ban, r.Escalation.Max, r.Escalation.Lookback = day, time.Minute, time.Hour, day
			}))},
		{"escalation as a block mapping", rtRule("escalation:\n      factor: 3\n      max: 12h\n      lookback: 1d"),
			one(with(func(r *Rule) { r.Escalation = Escalation{Factor: 3, Max: 12 * time.Hour, Lookback: day} }))},
		{"escalation null", rtRule("escalation:"), one(def())},
		{"max = ban, lookback = range", rtRule("range: 1h", "ban: 2h", "escalation: {max: 2h, lookback: 1h}"),
			one(with(func(r *Rule) {
				r.Range, r.Ban, r.Escalation.Max, r.Escalation.Lookback = time.Hour, 2*time.Hour, 2*time.Hour, time.Hour
			}))},
		// Durations and numbers.
		{"durations with days and units", rtRule("range: 1d", "ban: 1h30m", "escalation: {max: 7d12h, lookback: 3650d}"),
			one(with(func(r *Rule) {
				r.Range, r.Ban = day, 90*time.Minute
				r.Escalation.Max, r.Escalation.Lookback = 7*day+12*time.Hour, 3650*day
			}))},
		{"quoted durations", rtRule(`range: "5m"`, `ban: '1s'`), one(with(func(r *Rule) { r.Range, r.Ban = 5*time.Minute, time.Second }))},
		{"range in minutes written in seconds", rtRule("range: 120s"), one(with(func(r *Rule) { r.Range = 2 * time.Minute }))},
		{"ban at its limits", rtRule("ban: 3650d"), one(with(func(r *Rule) {
			r.Ban, r.Escalation.Max, r.Escalation.Lookback = 3650*day, 3650*day, 7300*day
		}))},
		{"threshold 1", rtRule("threshold: 1"), one(with(func(r *Rule) { r.Threshold = 1 }))},
		{"threshold the largest uint64", rtRule("threshold: 18446744073709551615"), one(with(func(r *Rule) { r.Threshold = math.MaxUint64 }))},
		{"threshold in hex", rtRule("threshold: 0x10"), one(with(func(r *Rule) { r.Threshold = 16 }))},
		{"threshold with underscores", rtRule("threshold: 1_000"), one(with(func(r *Rule) { r.Threshold = 1000 }))},
		// Names.
		{"name of one character", rtRule("name: a"), one(with(func(r *Rule) { r.Name = "a" }))},
		{"name of 63 characters, digits, _ and -", rtRule("name: 0" + strings.Repeat("a_-", 20) + "zz"),
			one(with(func(r *Rule) { r.Name = "0" + strings.Repeat("a_-", 20) + "zz" }))},
		// Allow entries.
		{"allow: addresses become /32 and /128, mapped addresses IPv4", `allow:
  - 203.0.113.7
  - 2001:db8::1
  - ::ffff:198.51.100.7
  - ::ffff:198.51.100.0/120
  - " 192.0.2.0/24 "
  - 0.0.0.0/0
  - ::/0
`, &Rules{Mode: ModeEnforce, Allow: []netip.Prefix{rtPrefix("203.0.113.7/32"), rtPrefix("2001:db8::1/128"),
			rtPrefix("198.51.100.7/32"), rtPrefix("198.51.100.0/24"), rtPrefix("192.0.2.0/24"), rtPrefix("0.0.0.0/0"), rtPrefix("::/0")}}},
		{"flow style", `{mode: simulate, allow: [10.0.0.0/8], rules: [{name: a, range: 5m, threshold: 10, ban: 1h}]}`,
			&Rules{Mode: ModeSimulate, Allow: []netip.Prefix{rtPrefix("10.0.0.0/8")}, Rules: []Rule{{Name: "a", Key: KeyIP,
				Range: 5 * time.Minute, Threshold: 10, Ban: time.Hour, Class: counts.Requests, Line: 1,
				Escalation: Escalation{Factor: 2, Max: 7 * day, Lookback: 14 * day}}}}},
		{"anchors and aliases", `rules:
  - name: a
    range: &r 5m
    threshold: 10
    ban: 1h
    escalation: &esc {factor: 3, max: 1d}
  - name: b
    range: *r
    threshold: 20
    ban: 1h
    escalation: *esc
`, &Rules{Mode: ModeEnforce, Rules: []Rule{
			{Name: "a", Key: KeyIP, Range: 5 * time.Minute, Threshold: 10, Ban: time.Hour, Class: counts.Requests, Line: 2,
				Escalation: Escalation{Factor: 3, Max: day, Lookback: 2 * day}},
			{Name: "b", Key: KeyIP, Range: 5 * time.Minute, Threshold: 20, Ban: time.Hour, Class: counts.Requests, Line: 7,
				Escalation: Escalation{Factor: 3, Max: day, Lookback: 2 * day}},
		}}},
		{"several rules keep their order and lines", `mode: simulate
rules:
  - name: http-flood
    range: 1m
    threshold: 300
    ban: 10m

  - name: scan-4xx
    key: prefix
    range: 10m
    threshold: 500
    ban: 1h
    class: 4xx
  - name: sshd
    range: 15m
    threshold: 5
    ban: 1h
    class: auth_failure
    escalation: {factor: 4, max: 30d, lookback: 90d}
`, &Rules{Mode: ModeSimulate, Rules: []Rule{
			{Name: "http-flood", Key: KeyIP, Range: time.Minute, Threshold: 300, Ban: 10 * time.Minute, Class: counts.Requests, Line: 3,
				Escalation: Escalation{Factor: 2, Max: 7 * day, Lookback: 14 * day}},
			{Name: "scan-4xx", Key: KeyPrefix, PrefixV4: 24, PrefixV6: 64, Range: 10 * time.Minute, Threshold: 500, Ban: time.Hour,
				Class: counts.Status4xx, Line: 8, Escalation: Escalation{Factor: 2, Max: 7 * day, Lookback: 14 * day}},
			{Name: "sshd", Key: KeyIP, Range: 15 * time.Minute, Threshold: 5, Ban: time.Hour, Class: counts.AuthFailures, Line: 14,
				Escalation: Escalation{Factor: 4, Max: 30 * day, Lookback: 90 * day}},
		}}},
		{"CRLF line ends", strings.ReplaceAll(rtRule("class: 5xx"), "\n", "\r\n"), one(with(func(r *Rule) { r.Class = counts.Status5xx }))},
		{"a file of exactly MaxRulesFileSize bytes", rtPad("mode: simulate\n", MaxRulesFileSize), &Rules{Mode: ModeSimulate}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseRules("rules.yaml", []byte(tc.data))
			if err != nil {
				t.Fatalf("ParseRules: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ParseRules =\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}

// rtPad fills data up to size bytes with comment lines.
func rtPad(data string, size int) string {
	var b strings.Builder
	b.WriteString(data)
	for b.Len() < size {
		line := "# " + strings.Repeat("x", min(78, size-b.Len()-3)) + "\n"
		if size-b.Len() < 3 {
			line = strings.Repeat("\n", size-b.Len())
		}
		b.WriteString(line)
	}
	return b.String()
}

func TestParseRulesInvalid(t *testing.T) {
	long := strings.Repeat("a", 64)
	for _, tc := range []struct {
		name string
		data string
		want []rtWant
	}{
		// Keys.
		{"unknown top-level key", "mode: enforce\nrulez: []\n", []rtWant{{2, `unknown key "rulez" (want mode, allow, rules)`}}},
		{"top-level key twice", "mode: enforce\nallow: []\nmode: simulate\n", []rtWant{{3, "mode is given twice (first at line 1)"}}},
		{"unknown rule key", rtRule("treshold: 5"), []rtWant{{6, `rule "x": unknown key "treshold" (want name, key, prefix_v4, prefix_v6, range, threshold, ban, class, escalation)`}}},
		{"unknown rule key before the name", "rules:\n  - bogus: 1\n    name: x\n    range: 1m\n    threshold: 1\n    ban: 1m\n", []rtWant{{2, `rule "x": unknown key "bogus"`}}},
		{"rule key twice", rtRule() + "    ban: 2h\n", []rtWant{{6, `rule "x": ban is given twice (first at line 5)`}}},
		{"unknown escalation key", rtRule("escalation: {factor: 2, maximum: 1d}"), []rtWant{{6, `rule "x": escalation: unknown key "maximum" (want factor, max, lookback)`}}},
		{"a key that is not a name", "? [a, b]\n: 1\n", []rtWant{{1, "keys must be names"}}},
		{"merge keys are unknown keys", "rules:\n  - <<: {threshold: 1}\n    name: x\n    range: 1m\n    threshold: 1\n    ban: 1m\n", []rtWant{{2, `unknown key "<<"`}}},
		// Shapes.
		{"the file is a list", "- mode: enforce\n", []rtWant{{1, "the file must be a mapping of mode, allow and rules"}}},
		{"the file is text", "just some text\n", []rtWant{{1, "the file must be a mapping of mode, allow and rules"}}},
		{"rules is a mapping", "rules: {name: x}\n", []rtWant{{1, "rules must be a list of rules"}}},
		{"a rule is not a mapping", "rules:\n  - http-flood\n", []rtWant{{2, `rule 1: want a mapping of name, key, prefix_v4, prefix_v6, range, threshold, ban, class, escalation, got "http-flood"`}}},
		{"allow is not a list", "allow: 10.0.0.0/8\n", []rtWant{{1, "allow must be a list of addresses and CIDR prefixes"}}},
		{"escalation is not a mapping", rtRule("escalation: 2"), []rtWant{{6, `rule "x": escalation must be a mapping of factor, max, lookback, got "2"`}}},
		{"two documents", "mode: enforce\n---\nmode: simulate\n", []rtWant{{2, "only one YAML document is allowed"}}},
		// Values of mode, key, class.
		{"unknown mode", "mode: block\n", []rtWant{{1, `mode must be enforce or simulate, got "block"`}}},
		{"mode is case-sensitive", "mode: Enforce\n", []rtWant{{1, `mode must be enforce or simulate, got "Enforce"`}}},
		{"mode empty", "mode:\n", []rtWant{{1, "mode must be enforce or simulate, got nothing"}}},
		{"mode a list", "mode: [enforce]\n", []rtWant{{1, "mode must be enforce or simulate, got a list"}}},
		{"unknown key kind", rtRule("key: cidr"), []rtWant{{6, `rule "x": key must be ip or prefix, got "cidr"`}}},
		{"unknown class", rtRule("class: 3xx"), []rtWant{{6, `rule "x": unknown class "3xx": want one of requests, 4xx, 5xx, auth_failure, bytes`}}},
		{"class a list", rtRule("class: [4xx]"), []rtWant{{6, `rule "x": unknown class a list`}}},
		// Names.
		{"duplicate rule names", rtRule() + "  - name: x\n    range: 5m\n    threshold: 1\n    ban: 1m\n", []rtWant{{6, `rule "x": duplicate name (first at line 2)`}}},
		{"name with capitals", rtRule("name: HTTP"), []rtWant{{2, `rule 1: name must match [a-z0-9][a-z0-9_-]{0,62}, got "HTTP"`}}},
		{"name starting with -", rtRule("name: -x"), []rtWant{{2, `name must match [a-z0-9][a-z0-9_-]{0,62}, got "-x"`}}},
		{"name with a space", rtRule("name: http flood"), []rtWant{{2, `got "http flood"`}}},
		{"name with a dot", rtRule("name: http.flood"), []rtWant{{2, `got "http.flood"`}}},
		{"name of 64 characters", rtRule("name: " + long), []rtWant{{2, `name must match [a-z0-9][a-z0-9_-]{0,62}, got "` + long + `"`}}},
		{"name a list", rtRule("name: [x]"), []rtWant{{2, "rule 1: name must match [a-z0-9][a-z0-9_-]{0,62}, got a list"}}},
		{"name missing", rtRule("-name"), []rtWant{{2, "rule 1: name is required"}}},
		{"name empty", rtRule("name:"), []rtWant{{2, "rule 1: name is required"}}},
		{"the second rule is numbered 2", rtRule() + "  - name: Y\n    range: 1m\n    threshold: 1\n    ban: 1m\n", []rtWant{{6, `rule 2: name must match`}}},
		// Prefix lengths.
		{"prefix_v4 with key ip", rtRule("prefix_v4: 24"), []rtWant{{6, `rule "x": prefix_v4 is only allowed with key: prefix`}}},
		{"prefix_v6 with key ip", rtRule("key: ip", "prefix_v6: 64"), []rtWant{{7, `rule "x": prefix_v6 is only allowed with key: prefix`}}},
		{"prefix_v4 0", rtRule("key: prefix", "prefix_v4: 0"), []rtWant{{7, `rule "x": prefix_v4 must be between 1 and 32, got 0`}}},
		{"prefix_v4 33", rtRule("key: prefix", "prefix_v4: 33"), []rtWant{{7, "prefix_v4 must be between 1 and 32, got 33"}}},
		{"prefix_v6 0", rtRule("key: prefix", "prefix_v6: 0"), []rtWant{{7, "prefix_v6 must be between 1 and 128, got 0"}}},
		{"prefix_v6 129", rtRule("key: prefix", "prefix_v6: 129"), []rtWant{{7, "prefix_v6 must be between 1 and 128, got 129"}}},
		{"prefix_v4 negative", rtRule("key: prefix", "prefix_v4: -8"), []rtWant{{7, "prefix_v4 must be positive, got -8"}}},
		{"prefix_v4 a string", rtRule("key: prefix", `prefix_v4: "24"`), []rtWant{{7, `prefix_v4 must be a whole number, got "24"`}}},
		{"prefix_v6 a fraction", rtRule("key: prefix", "prefix_v6: 48.5"), []rtWant{{7, `prefix_v6 must be a whole number, got "48.5"`}}},
		{"prefix_v4 in CIDR notation", rtRule("key: prefix", "prefix_v4: /24"), []rtWant{{7, `prefix_v4 must be a whole number, got "/24"`}}},
		// Range.
		{"range not whole minutes", rtRule("range: 90s"), []rtWant{{3, `rule "x": range must be a whole number of minutes, got 90s`}}},
		{"range a fraction of minutes", rtRule("range: 1.5m"), []rtWant{{3, "range must be a whole number of minutes, got 1.5m"}}},
		{"range below a minute", rtRule("range: 30s"), []rtWant{{3, "range must be a whole number of minutes, got 30s"}}},
		{"range above 24h", rtRule("range: 24h1m"), []rtWant{{3, "range must be at most 24h, got 24h1m"}}},
		{"range 2d", rtRule("range: 2d"), []rtWant{{3, "range must be at most 24h, got 2d"}}},
		{"range 0", rtRule("range: 0m"), []rtWant{{3, "range must be positive, got 0m"}}},
		{"range negative", rtRule("range: -5m"), []rtWant{{3, "range must be positive, got -5m"}}},
		{"range without a unit", rtRule("range: 5"), []rtWant{{3, "range needs a unit, like 5m, got 5"}}},
		{"range 10x", rtRule("range: 10x"), []rtWant{{3, `range must be a duration like 90s, 5m, 1h or 7d, got "10x"`}}},
		{"range a list", rtRule("range: [1m]"), []rtWant{{3, `range must be a duration like 90s, 5m, 1h or 7d, got a list`}}},
		{"range missing", rtRule("-range"), []rtWant{{2, `rule "x": range is required`}}},
		// Threshold.
		{"threshold 0", rtRule("threshold: 0"), []rtWant{{4, `rule "x": threshold must be positive`}}},
		{"threshold negative", rtRule("threshold: -1"), []rtWant{{4, `rule "x": threshold must be positive`}}},
		{"threshold not a number", rtRule("threshold: lots"), []rtWant{{4, `rule "x": threshold must be a whole number, got "lots"`}}},
		{"threshold a fraction", rtRule("threshold: 2.5"), []rtWant{{4, `threshold must be a whole number, got "2.5"`}}},
		{"threshold quoted", rtRule(`threshold: "300"`), []rtWant{{4, `threshold must be a whole number, got "300"`}}},
		{"threshold above uint64", rtRule("threshold: 18446744073709551616"), []rtWant{{4, `threshold must be a whole number, got "18446744073709551616"`}}},
		{"threshold empty", rtRule("threshold:"), []rtWant{{2, `rule "x": threshold is required`}}},
		{"threshold missing", rtRule("-threshold"), []rtWant{{2, `rule "x": threshold is required`}}},
		// Ban.
		{"ban below 1s", rtRule("ban: 500ms"), []rtWant{{5, `rule "x": ban must be at least 1s, got 500ms`}}},
		{"ban 0", rtRule("ban: 0s"), []rtWant{{5, `ban must be positive, got 0s`}}},
		{"ban negative", rtRule("ban: -10m"), []rtWant{{5, `ban must be positive, got -10m`}}},
		{"ban 10x", rtRule("ban: 10x"), []rtWant{{5, `rule "x": ban must be a duration like 90s, 5m, 1h or 7d, got "10x"`}}},
		{"ban with days last", rtRule("ban: 1h7d"), []rtWant{{5, `ban must be a duration like 90s, 5m, 1h or 7d, got "1h7d"`}}},
		{"ban in words", rtRule("ban: ten minutes"), []rtWant{{5, `got "ten minutes"`}}},
		{"ban without a unit", rtRule("ban: 600"), []rtWant{{5, `ban needs a unit, like 5m, got 600`}}},
		{"ban a float", rtRule("ban: 1.5"), []rtWant{{5, `ban needs a unit, like 5m, got 1.5`}}},
		{"ban above 3650d", rtRule("ban: 3651d"), []rtWant{{5, `ban must be at most 3650d, got 3651d`}}},
		{"ban overflowing", rtRule("ban: 999999999d"), []rtWant{{5, `ban must be a duration like 90s, 5m, 1h or 7d, got "999999999d"`}}},
		{"ban missing", rtRule("-ban"), []rtWant{{2, `rule "x": ban is required`}}},
		// Escalation.
		{"escalation factor below 1", rtRule("escalation: {factor: 0.5}"), []rtWant{{6, `rule "x": escalation factor must be at least 1 (1 = no escalation), got 0.5`}}},
		{"escalation factor 0", rtRule("escalation: {factor: 0}"), []rtWant{{6, "escalation factor must be at least 1 (1 = no escalation), got 0"}}},
		{"escalation factor negative", rtRule("escalation: {factor: -2}"), []rtWant{{6, "escalation factor must be at least 1 (1 = no escalation), got -2"}}},
		{"escalation factor not a number", rtRule("escalation: {factor: double}"), []rtWant{{6, `escalation factor must be a number, got "double"`}}},
		{"escalation factor quoted", rtRule(`escalation: {factor: "2"}`), []rtWant{{6, `escalation factor must be a number, got "2"`}}},
		{"escalation factor infinite", rtRule("escalation: {factor: .inf}"), []rtWant{{6, `escalation factor must be a number, got ".inf"`}}},
		{"escalation factor NaN", rtRule("escalation: {factor: .nan}"), []rtWant{{6, `escalation factor must be a number, got ".nan"`}}},
		{"escalation max below ban", rtRule("ban: 1h", "escalation: {max: 30m}"), []rtWant{{6, `rule "x": escalation max (30m) must be at least ban (1h)`}}},
		{"escalation max below a default ban", rtRule("escalation:\n      max: 5m"), []rtWant{{7, "escalation max (5m) must be at least ban (10m)"}}},
		{"escalation max above 3650d", rtRule("escalation: {max: 3651d}"), []rtWant{{6, "escalation max must be at most 3650d, got 3651d"}}},
		{"escalation max 10x", rtRule("escalation: {max: 10x}"), []rtWant{{6, `escalation max must be a duration like 90s, 5m, 1h or 7d, got "10x"`}}},
		{"escalation lookback below range", rtRule("range: 1h", "escalation: {lookback: 30m}"), []rtWant{{6, `rule "x": escalation lookback (30m) must be at least range (1h)`}}},
		{"escalation lookback above 3650d", rtRule("escalation: {lookback: 4000d}"), []rtWant{{6, "escalation lookback must be at most 3650d, got 4000d"}}},
		{"escalation lookback forever", rtRule("escalation: {lookback: forever}"), []rtWant{{6, `escalation lookback must be a duration like 90s, 5m, 1h or 7d, got "forever"`}}},
		{"escalation lookback without a unit", rtRule("escalation: {lookback: 14}"), []rtWant{{6, "escalation lookback needs a unit, like 5m, got 14"}}},
		// Allow.
		{"allow: prefix length too long", "allow:\n  - 10.0.0.0/33\n", []rtWant{{2, `allow: "10.0.0.0/33" is not a CIDR prefix`}}},
		{"allow: IPv6 prefix length too long", "allow:\n  - 2001:db8::/129\n", []rtWant{{2, `allow: "2001:db8::/129" is not a CIDR prefix`}}},
		{"allow: bad address in a prefix", "allow:\n  - 300.0.0.0/8\n", []rtWant{{2, `allow: "300.0.0.0/8" is not a CIDR prefix`}}},
		{"allow: bad address", "allow:\n  - 198.51.100.256\n", []rtWant{{2, `allow: "198.51.100.256" is not an IP address or a CIDR prefix`}}},
		{"allow: a host name", "allow:\n  - localhost\n", []rtWant{{2, `allow: "localhost" is not an IP address or a CIDR prefix`}}},
		{"allow: a range", "allow:\n  - 10.0.0.1-10.0.0.9\n", []rtWant{{2, `"10.0.0.1-10.0.0.9" is not an IP address or a CIDR prefix`}}},
		{"allow: an address with a zone", "allow:\n  - fe80::1%eth0\n", []rtWant{{2, `allow: "fe80::1%eth0" is not an IP address or a CIDR prefix`}}},
		{"allow: an empty string", "allow:\n  - \"\"\n", []rtWant{{2, `allow: "" is not an IP address or a CIDR prefix`}}},
		{"allow: an empty entry", "allow:\n  -\n", []rtWant{{2, "allow: want an address or a CIDR prefix, got nothing"}}},
		{"allow: a list entry", "allow:\n  - [10.0.0.0/8]\n", []rtWant{{2, "allow: want an address or a CIDR prefix, got a list"}}},
		// Host bits set: refused (not silently masked), with the masked prefix as a hint.
		{"allow: host bits set (IPv4)", "allow:\n  - 198.51.100.7/24\n", []rtWant{{2, `allow: "198.51.100.7/24" has bits set beyond its prefix length (did you mean 198.51.100.0/24?)`}}},
		{"allow: host bits set (IPv6)", "allow:\n  - 2001:db8:1::1/48\n", []rtWant{{2, `allow: "2001:db8:1::1/48" has bits set beyond its prefix length (did you mean 2001:db8:1::/48?)`}}},
		{"allow: host bits set (mapped)", "allow:\n  - ::ffff:198.51.100.7/120\n", []rtWant{{2, `allow: "::ffff:198.51.100.7/120" has bits set beyond its prefix length (did you mean 198.51.100.0/24?)`}}},
		{"allow: every bad entry is reported", "allow:\n  - 10.0.0.0/8\n  - nope\n  - 10.0.0.1/8\n  - 2001:db8::/48\n  - 1.2.3.4/40\n",
			[]rtWant{{3, `"nope" is not an IP address`}, {4, `did you mean 10.0.0.0/8?`}, {6, `"1.2.3.4/40" is not a CIDR prefix`}}},
		// Tabs: reported on every line, before YAML is read.
		{"tab in indentation", "mode: enforce\nrules:\n\t- name: x\n", []rtWant{{3, "tab in indentation: YAML indents with spaces"}}},
		{"tab after spaces", rtRule() + "  \t\n    \tclass: 4xx\n", []rtWant{{7, "tab in indentation"}}},
		{"tabs on several lines, other problems not reported", "mode: nope\nrules:\n\t- name: X\n\t  range: 1m\n",
			[]rtWant{{3, "tab in indentation"}, {4, "tab in indentation"}}},
		// YAML syntax errors: the line of the problem (not yaml.v3's, which
		// is where the enclosing block starts, counted from 0).
		{"yaml: flow sequence not closed at the end", "mode: [\n", []rtWant{{1, "did not find expected node content"}}},
		{"yaml: flow sequence not closed", "mode: enforce\nallow: [1.2.3.4\nrules: []\n", []rtWant{{2, "did not find expected ',' or ']'"}}},
		{"yaml: flow mapping not closed", rtRule("escalation: {factor: 2, max: 1d") + "  - name: y\n", []rtWant{{6, "did not find expected ',' or '}'"}}},
		{"yaml: bad indentation in a rule", "mode: enforce\nrules:\n  - name: a\n    range: 1m\n   threshold: 1\n", []rtWant{{5, "did not find expected '-' indicator"}}},
		{"yaml: bad indentation in the second rule", rtRule() + "  - name: y\n    range: 1m\n   threshold: 1\n", []rtWant{{8, "did not find expected '-' indicator"}}},
		{"yaml: indented top-level key", "mode: enforce\nallow:\n  - 10.0.0.0/8\n  - 10.1.0.0/16\n rules: []\n", []rtWant{{5, "did not find expected key"}}},
		{"yaml: list item in a mapping", rtRule("- foo"), []rtWant{{6, "did not find expected key"}}},
		{"yaml: mapping values on line 1", "mode: enforce: simulate\n", []rtWant{{1, "mapping values are not allowed in this context"}}},
		{"yaml: missing colon", "mode: enforce\nallow\n", []rtWant{{2, "could not find expected ':'"}}},
		{"yaml: quote not closed", "mode: \"enforce\nrules: []\n", []rtWant{{1, "found unexpected end of stream"}}},
		{"yaml: backquote", "mode: enforce\n\n\nrules:\n  - name: a\n    range: `1m`\n", []rtWant{{6, "found character that cannot start any token"}}},
		{"yaml: unknown alias", "mode: enforce\nallow: *nets\n", []rtWant{{2, "unknown anchor 'nets' referenced"}}},
		{"yaml: syntax error in a second document", "mode: enforce\n---\nmode: [\n", []rtWant{{3, "did not find expected node content"}}},
		// Size.
		{"file over MaxRulesFileSize", rtPad("mode: simulate\n", MaxRulesFileSize+1), []rtWant{{0, fmt.Sprintf("file is larger than %d bytes", MaxRulesFileSize)}}},
		// Several problems at once.
		{"several problems of one rule", rtRule("threshold: 0", "ban: 10x", "class: bogus", "key: ip", "prefix_v4: 8"),
			[]rtWant{{4, "threshold must be positive"}, {5, `ban must be a duration`}, {6, `unknown class "bogus"`}, {8, "prefix_v4 is only allowed with key: prefix"}}},
		{"problems all over the file", `mode: simulated
allow:
  - 10.0.0.0/8
  - 10.0.0.1/16
rules:
  - name: ok
    range: 1m
    threshold: 5
    ban: 1m
  - name: bad
    range: 1d1m
    threshold: 5
    ban: 1m
  - name: ok
    range: 1m
    threshold: 5
    ban: 1m
extra: 1
`, []rtWant{{1, `mode must be enforce or simulate, got "simulated"`}, {4, "did you mean 10.0.0.0/16?"},
			{11, `rule "bad": range must be at most 24h`}, {14, `rule "ok": duplicate name (first at line 6)`}, {18, `unknown key "extra"`}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rules, err := ParseRules("rules.yaml", []byte(tc.data))
			if err == nil {
				t.Fatalf("ParseRules accepted it: %+v", rules)
			}
			if rules != nil {
				t.Errorf("ParseRules returned rules with its error: %+v", rules)
			}
			got := rtErrors(t, err)
			sort.SliceStable(got, func(i, j int) bool { return got[i].Line < got[j].Line })
			if len(got) != len(tc.want) {
				t.Fatalf("%d problems, want %d:\n%v", len(got), len(tc.want), err)
			}
			for i, w := range tc.want {
				g := got[i]
				if !strings.Contains(g.Msg, w.msg) {
					t.Errorf("problem %d: %q, want it to hold %q", i, g.Msg, w.msg)
				}
				if g.File != "rules.yaml" {
					t.Errorf("problem %d: file %q", i, g.File)
				}
				if g.Line != w.line {
					t.Errorf("problem %d (%q): line %d, want %d", i, g.Msg, g.Line, w.line)
				}
				want := fmt.Sprintf("rules.yaml:%d: ", w.line)
				if w.line == 0 {
					want = "rules.yaml: "
				}
				if !strings.HasPrefix(g.Error(), want) {
					t.Errorf("problem %d reads %q, want it to start with %q", i, g.Error(), want)
				}
			}
		})
	}
}

func TestParseRulesErrorCap(t *testing.T) {
	var b strings.Builder
	b.WriteString("rules:\n")
	const n = maxReportedRulesErrors + 5
	for i := range n {
		fmt.Fprintf(&b, "  - name: r%d\n    range: 1m\n    threshold: 0\n    ban: 1m\n", i)
	}
	_, err := ParseRules("rules.yaml", []byte(b.String()))
	if err == nil {
		t.Fatal("accepted")
	}
	got := rtErrors(t, err)
	if len(got) != maxReportedRulesErrors+1 {
		t.Fatalf("%d problems, want %d and a summary:\n%v", len(got), maxReportedRulesErrors, err)
	}
	for i, e := range got[:maxReportedRulesErrors] {
		if want := 4 + 4*i; e.Line != want || e.Msg != fmt.Sprintf("rule %q: threshold must be positive", fmt.Sprintf("r%d", i)) {
			t.Errorf("problem %d: %v, want line %d", i, e, want)
		}
	}
	if last := got[maxReportedRulesErrors]; last.Line != 0 || last.Msg != "and 5 more problems" {
		t.Errorf("summary: %+v", last)
	}
	var first *RulesError
	if !errors.As(err, &first) || first.Line != 4 {
		t.Errorf("errors.As finds %+v, want the first problem (line 4)", first)
	}
	// The summary counts problems, not rules: a rule with two problems past
	// the cap counts two.
	b.WriteString("  - name: Z\n    range: 1m\n    threshold: 1\n    ban: 1m\n    escalation: {factor: 0}\n")
	_, err = ParseRules("rules.yaml", []byte(b.String()))
	if got := rtErrors(t, err); got[len(got)-1].Msg != "and 7 more problems" {
		t.Errorf("summary: %q, want 7 more", got[len(got)-1].Msg)
	}
}

func TestParseRulesOneError(t *testing.T) {
	_, err := ParseRules("/etc/logtally/rules.yaml", []byte(rtRule("threshold: 0")))
	var re *RulesError
	if !errors.As(err, &re) {
		t.Fatalf("%T %v", err, err)
	}
	if err != error(re) {
		t.Errorf("one problem comes as the *RulesError itself, not joined: %T", err)
	}
	if want := `/etc/logtally/rules.yaml:4: rule "x": threshold must be positive`; err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
	if re.Column != 16 {
		t.Errorf("column %d, want 16", re.Column)
	}
}

// TestRulesDocExamples parses every yaml block of docs/rules.md: the
// documentation's examples are valid files.
func TestRulesDocExamples(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "rules.md"))
	if errors.Is(err, os.ErrNotExist) {
		t.Skip("no docs/rules.md")
	}
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?ms)^```yaml\n(.*?)^```").FindAllSubmatch(doc, -1)
	if len(blocks) < 5 {
		t.Fatalf("%d yaml blocks in docs/rules.md, want the examples", len(blocks))
	}
	for i, b := range blocks {
		r, err := ParseRules(fmt.Sprintf("docs/rules.md block %d", i+1), b[1])
		if err != nil {
			t.Errorf("%v\n%s", err, b[1])
			continue
		}
		if len(r.Rules) == 0 && len(r.Allow) == 0 {
			t.Errorf("block %d holds neither rules nor an allow list:\n%s", i+1, b[1])
		}
	}
}

// ---------------------------------------------------------------- keys

func TestAllowed(t *testing.T) {
	rules, err := ParseRules("rules.yaml", []byte(`allow:
  - 198.51.100.0/28
  - "2001:db8:1::/48"
  - 203.0.113.7
`))
	if err != nil {
		t.Fatal(err)
	}
	v4only := &Rules{Allow: []netip.Prefix{rtPrefix("198.51.100.0/28")}}
	v6only := &Rules{Allow: []netip.Prefix{rtPrefix("2001:db8:1::/48")}}
	for _, tc := range []struct {
		rules *Rules
		p     string
		want  bool
	}{
		// Addresses inside an entry, and next to it.
		{rules, "198.51.100.0/32", true},
		{rules, "198.51.100.15/32", true},
		{rules, "198.51.100.16/32", false},
		{rules, "198.51.99.255/32", false},
		{rules, "203.0.113.7/32", true},
		{rules, "203.0.113.8/32", false},
		{rules, "2001:db8:1::1/128", true},
		{rules, "2001:db8:1:ffff:ffff:ffff:ffff:ffff/128", true},
		{rules, "2001:db8:2::1/128", false},
		// Prefixes inside an entry.
		{rules, "198.51.100.0/28", true},
		{rules, "198.51.100.8/29", true},
		{rules, "2001:db8:1:2::/64", true},
		// Prefixes that hold an allowed address: banning them would ban it.
		{rules, "198.51.100.0/24", true},
		{rules, "198.51.0.0/16", true},
		{rules, "198.51.100.0/27", true},
		{rules, "203.0.113.0/24", true},
		{rules, "203.0.113.6/31", true},
		{rules, "0.0.0.0/0", true},
		{rules, "2001:db8::/32", true},
		{rules, "::/0", true},
		// Prefixes apart from every entry.
		{rules, "198.51.100.16/28", false},
		{rules, "198.51.101.0/24", false},
		{rules, "203.0.113.8/29", false},
		{rules, "2001:db8:2::/48", false},
		{rules, "2001:db8:1::/48", true},
		// Not masked: the prefix's network counts.
		{rules, "198.51.100.200/24", true},
		{rules, "203.0.113.200/24", true},
		{rules, "198.51.101.7/24", false},
		// IPv4-mapped IPv6 counts as IPv4.
		{rules, "::ffff:198.51.100.5/128", true},
		{rules, "::ffff:198.51.100.16/128", false},
		{rules, "::ffff:198.51.100.0/120", true}, // 198.51.100.0/24
		{rules, "::ffff:203.0.113.0/120", true},
		{rules, "::ffff:198.51.101.0/120", false},
		{rules, "::ffff:0.0.0.0/96", true}, // 0.0.0.0/0
		{v6only, "::ffff:198.51.100.5/128", false},
		{v6only, "::ffff:0.0.0.0/96", false},
		// IPv4 and IPv6 never overlap.
		{v4only, "::/0", false},
		{v4only, "::/1", false},
		{v6only, "0.0.0.0/0", false},
		{v6only, "2001:db8::/32", true},
		{v4only, "0.0.0.0/0", true},
		// Nothing to allow.
		{&Rules{}, "198.51.100.1/32", false},
		{&Rules{}, "0.0.0.0/0", false},
		{nil, "198.51.100.1/32", false},
	} {
		if got := tc.rules.Allowed(rtPrefix(tc.p)); got != tc.want {
			t.Errorf("Allowed(%s) with allow %v = %v, want %v", tc.p, allowOf(tc.rules), got, tc.want)
		}
	}
	if rules.Allowed(netip.Prefix{}) {
		t.Error("Allowed(invalid prefix) = true")
	}
	if (&Rules{Allow: []netip.Prefix{rtPrefix("0.0.0.0/0")}}).Allowed(netip.Prefix{}) {
		t.Error("Allowed(invalid prefix) = true with 0.0.0.0/0 allowed")
	}
}

func allowOf(r *Rules) []netip.Prefix {
	if r == nil {
		return nil
	}
	return r.Allow
}

func TestAllowedAddr(t *testing.T) {
	rules := &Rules{Allow: []netip.Prefix{rtPrefix("198.51.100.0/28"), rtPrefix("2001:db8:1::/48"), rtPrefix("fe80::/10")}}
	for _, tc := range []struct {
		a    string
		want bool
	}{
		{"198.51.100.1", true},
		{"198.51.100.15", true},
		{"198.51.100.16", false},
		{"::ffff:198.51.100.1", true},
		{"::ffff:198.51.100.16", false},
		{"2001:db8:1::7", true},
		{"2001:db8:1::7%eth0", true},
		{"fe80::1%eth0", true},
		{"2001:db8:2::7", false},
		{"10.0.0.1", false},
	} {
		if got := rules.AllowedAddr(netip.MustParseAddr(tc.a)); got != tc.want {
			t.Errorf("AllowedAddr(%s) = %v, want %v", tc.a, got, tc.want)
		}
	}
	if rules.AllowedAddr(netip.Addr{}) {
		t.Error("AllowedAddr(invalid) = true")
	}
	var none *Rules
	if none.AllowedAddr(netip.MustParseAddr("198.51.100.1")) {
		t.Error("nil Rules allows an address")
	}
	// An address inside a key that holds it is allowed both ways.
	if !rules.AllowedAddr(netip.MustParseAddr("198.51.100.3")) || !rules.Allowed(rtPrefix("198.51.100.0/24")) {
		t.Error("an allowed address, or its /24")
	}
}

func TestKeyOf(t *testing.T) {
	ip := Rule{Name: "ip", Key: KeyIP}
	pfx := Rule{Name: "pfx", Key: KeyPrefix, PrefixV4: DefaultPrefixV4, PrefixV6: DefaultPrefixV6}
	narrow := Rule{Name: "narrow", Key: KeyPrefix, PrefixV4: 16, PrefixV6: 48}
	full := Rule{Name: "full", Key: KeyPrefix, PrefixV4: 32, PrefixV6: 128}
	unset := Rule{Name: "unset", Key: KeyPrefix} // made by hand: no lengths = whole addresses
	// prefix lengths on an ip rule (made by hand) are ignored
	ipWithLengths := Rule{Name: "ipl", Key: KeyIP, PrefixV4: 8, PrefixV6: 8}
	for _, tc := range []struct {
		rule *Rule
		addr string
		want string
	}{
		{&ip, "203.0.113.7", "203.0.113.7/32"},
		{&ip, "2001:db8::1", "2001:db8::1/128"},
		{&ip, "::ffff:203.0.113.7", "203.0.113.7/32"},
		{&ip, "fe80::1%eth0", "fe80::1/128"},
		{&ip, "0.0.0.0", "0.0.0.0/32"},
		{&ip, "::", "::/128"},
		{&ipWithLengths, "203.0.113.7", "203.0.113.7/32"},
		{&pfx, "203.0.113.7", "203.0.113.0/24"},
		{&pfx, "203.0.113.255", "203.0.113.0/24"},
		{&pfx, "2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{&pfx, "::ffff:203.0.113.7", "203.0.113.0/24"},
		{&pfx, "fe80::1:2:3:4%eth0", "fe80::/64"},
		{&narrow, "203.0.113.7", "203.0.0.0/16"},
		{&narrow, "2001:db8:1:2::1", "2001:db8:1::/48"},
		{&narrow, "::ffff:203.0.113.7", "203.0.0.0/16"},
		{&full, "203.0.113.7", "203.0.113.7/32"},
		{&full, "2001:db8::1", "2001:db8::1/128"},
		{&unset, "203.0.113.7", "203.0.113.7/32"},
		{&unset, "2001:db8::1", "2001:db8::1/128"},
	} {
		got := tc.rule.KeyOf(netip.MustParseAddr(tc.addr))
		if got != rtPrefix(tc.want) {
			t.Errorf("rule %s: KeyOf(%s) = %v, want %s", tc.rule.Name, tc.addr, got, tc.want)
		}
		if got.Addr().Zone() != "" || got.Masked() != got {
			t.Errorf("rule %s: KeyOf(%s) = %v: not canonical", tc.rule.Name, tc.addr, got)
		}
	}
	for _, r := range []*Rule{&ip, &pfx} {
		if got := r.KeyOf(netip.Addr{}); got.IsValid() {
			t.Errorf("rule %s: KeyOf(invalid) = %v", r.Name, got)
		}
	}
	// The parsed defaults give the same keys.
	parsed, err := ParseRules("rules.yaml", []byte(rtRule("key: prefix")))
	if err != nil {
		t.Fatal(err)
	}
	if got := parsed.Rules[0].KeyOf(netip.MustParseAddr("198.51.100.77")); got != rtPrefix("198.51.100.0/24") {
		t.Errorf("parsed key: prefix: KeyOf = %v", got)
	}
	// A key and the allow list agree on mapped addresses.
	allow := &Rules{Allow: []netip.Prefix{rtPrefix("198.51.100.7/32")}}
	if !allow.Allowed(pfx.KeyOf(netip.MustParseAddr("::ffff:198.51.100.9"))) {
		t.Error("the /24 of a mapped neighbour of an allowed address is not allowed")
	}
}

func TestBanFor(t *testing.T) {
	const day = 24 * time.Hour
	esc := func(f float64, max time.Duration) Escalation {
		return Escalation{Factor: f, Max: max, Lookback: 2 * max}
	}
	def := Rule{Ban: 10 * time.Minute, Escalation: esc(2, 7*day)}
	for _, tc := range []struct {
		name string
		rule Rule
		n    int
		want time.Duration
	}{
		{"first offence", def, 0, 10 * time.Minute},
		{"negative n is a first offence", def, -3, 10 * time.Minute},
		{"second", def, 1, 20 * time.Minute},
		{"third", def, 2, 40 * time.Minute},
		{"fourth", def, 3, 80 * time.Minute},
		{"under the cap", def, 9, 5120 * time.Minute},
		{"capped at max", def, 10, 7 * day},
		{"huge n", def, 1 << 40, 7 * day},
		{"MaxInt n", def, math.MaxInt, 7 * day},
		{"factor 1: never longer", Rule{Ban: time.Hour, Escalation: esc(1, 7*day)}, 50, time.Hour},
		{"factor 1.5, rounded to the second", Rule{Ban: time.Minute, Escalation: esc(1.5, day)}, 3, 203 * time.Second}, // 202.5s
		{"factor 1.5, n 2", Rule{Ban: time.Minute, Escalation: esc(1.5, day)}, 2, 135 * time.Second},
		{"reaches max exactly", Rule{Ban: time.Hour, Escalation: esc(2, 8*time.Hour)}, 3, 8 * time.Hour},
		{"past max exactly", Rule{Ban: time.Hour, Escalation: esc(2, 8*time.Hour)}, 4, 8 * time.Hour},
		{"max = ban", Rule{Ban: time.Hour, Escalation: esc(3, time.Hour)}, 2, time.Hour},
		{"large factor, large ban", Rule{Ban: 3650 * day, Escalation: esc(1e300, 3650*day)}, 5, 3650 * day},
		{"tiny factor above 1 stays near ban", Rule{Ban: time.Hour, Escalation: esc(1.0000001, 7*day)}, 1, time.Hour},
		// Made by hand, not by ParseRules.
		{"max below ban: ban", Rule{Ban: time.Hour, Escalation: esc(2, time.Minute)}, 3, time.Hour},
		{"zero max: ban", Rule{Ban: time.Hour, Escalation: Escalation{Factor: 2}}, 3, time.Hour},
		{"factor below 1: ban", Rule{Ban: time.Hour, Escalation: esc(0.5, day)}, 3, time.Hour},
		{"factor NaN: ban", Rule{Ban: time.Hour, Escalation: esc(math.NaN(), day)}, 3, time.Hour},
		{"factor +Inf: max", Rule{Ban: time.Hour, Escalation: esc(math.Inf(1), day)}, 1, day},
	} {
		if got := tc.rule.BanFor(tc.n); got != tc.want {
			t.Errorf("%s: BanFor(%d) = %v, want %v", tc.name, tc.n, got, tc.want)
		}
	}
	// Never shorter for a later offence, never above max, never negative.
	for _, r := range []Rule{def, {Ban: time.Second, Escalation: esc(1.1, 3650*day)}, {Ban: 3650 * day, Escalation: esc(2, 3650*day)}} {
		prev := time.Duration(0)
		for n := 0; n < 2000; n++ {
			got := r.BanFor(n)
			if got < prev || got > max(r.Escalation.Max, r.Ban) || got < r.Ban {
				t.Fatalf("ban %v factor %v: BanFor(%d) = %v after %v", r.Ban, r.Escalation.Factor, n, got, prev)
			}
			prev = got
		}
	}
}

// ---------------------------------------------------------------- the file

// rtLog is a logger whose output a test reads while the RulesFile writes.
type rtLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *rtLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *rtLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *rtLog) logger() hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "detector", Output: l, Level: hclog.Debug})
}

// rtWait polls cond until it holds or 10 s passed (the watch reacts within
// the debounce, 100 ms; the margin is for -race on a busy machine).
func rtWait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// rtQuiet waits long enough for a change to be noticed had it been: the
// debounce several times over. Only for checking that nothing happens.
func rtQuiet() { time.Sleep(5 * rulesDebounce) }

// rtMetric is the value of a gathered counter or gauge; -1 when absent.
func rtMetric(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if rtLabels(m, labels) {
				if c := m.GetCounter(); c != nil {
					return c.GetValue()
				}
				return m.GetGauge().GetValue()
			}
		}
	}
	return -1
}

func rtLabels(m *dto.Metric, kv []string) bool {
	have := map[string]string{}
	for _, l := range m.GetLabel() {
		have[l.GetName()] = l.GetValue()
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if have[kv[i]] != kv[i+1] {
			return false
		}
	}
	return true
}

// rtFile is an open RulesFile under test with what it reported.
type rtFile struct {
	*RulesFile
	reg     *prometheus.Registry
	log     *rtLog
	mu      sync.Mutex
	changes []*Rules
}

func (f *rtFile) changed() []*Rules {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*Rules(nil), f.changes...)
}

func (f *rtFile) reloads(t *testing.T, result string) float64 {
	t.Helper()
	return rtMetric(t, f.reg, "logtally_detector_rules_reloads_total", "result", result)
}

func (f *rtFile) loaded(t *testing.T) float64 {
	t.Helper()
	return rtMetric(t, f.reg, "logtally_detector_rules_loaded")
}

// waitRule waits until the rules in force have a first rule of threshold
// n, and onChange was told.
func (f *rtFile) waitThreshold(t *testing.T, n uint64) *Rules {
	t.Helper()
	rtWait(t, fmt.Sprintf("the rules of threshold %d", n), func() bool {
		cur := f.Current()
		if len(cur.Rules) == 0 || cur.Rules[0].Threshold != n {
			return false
		}
		ch := f.changed()
		return len(ch) > 0 && ch[len(ch)-1] == cur
	})
	return f.Current()
}

// rtOpen opens path with a fresh registry and a long poll, so that what is
// noticed is noticed through file-system events (poll > 0 sets it).
func rtOpen(t *testing.T, path string, poll time.Duration) *rtFile {
	t.Helper()
	if poll == 0 {
		poll = time.Hour
	}
	f := &rtFile{reg: prometheus.NewRegistry(), log: &rtLog{}}
	rf, err := OpenRules(path, f.log.logger(), func(r *Rules) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.changes = append(f.changes, r)
	}, WithRegisterer(f.reg), WithPollInterval(poll))
	if err != nil {
		t.Fatalf("OpenRules: %v", err)
	}
	f.RulesFile = rf
	t.Cleanup(func() { _ = rf.Close() })
	return f
}

// rtRules is a valid rules file whose one rule has threshold n.
func rtRules(n uint64) []byte { return []byte(rtRule(fmt.Sprintf("threshold: %d", n))) }

// rtRulesN is a valid rules file of n rules.
func rtRulesN(n int) []byte {
	var b strings.Builder
	b.WriteString("rules:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - name: r%d\n    range: 1m\n    threshold: %d\n    ban: 1m\n", i, 100+i)
	}
	return []byte(b.String())
}

func rtWriteFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// rtReplace writes data to a temporary file next to path and renames it
// over path, as editors and config management do.
func rtReplace(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp, err := os.CreateTemp(filepath.Dir(path), ".rules-*.tmp")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tmp.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := tmp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		t.Fatal(err)
	}
}

func TestOpenRulesInitial(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	rtWriteFile(t, path, rtRulesN(3))
	f := rtOpen(t, path, 0)
	want, _ := ParseRules(path, rtRulesN(3))
	if !reflect.DeepEqual(f.Current(), want) {
		t.Fatalf("Current() = %+v, want %+v", f.Current(), want)
	}
	if f.Path() != path {
		t.Errorf("Path() = %q", f.Path())
	}
	if got := f.loaded(t); got != 3 {
		t.Errorf("rules_loaded = %v, want 3", got)
	}
	// Both results are there from the start, so alerts see a 0 before the first failure.
	if ok, invalid := f.reloads(t, "ok"), f.reloads(t, "invalid"); ok != 0 || invalid != 0 {
		t.Errorf("reloads ok %v invalid %v, want 0 and 0", ok, invalid)
	}
	rtQuiet()
	if n := len(f.changed()); n != 0 {
		t.Errorf("onChange called %d times for the initial rules", n)
	}
	if f.Current() != f.Current() {
		t.Error("Current() is not the same value while nothing changes")
	}
}

func TestOpenRulesRefusesABadStart(t *testing.T) {
	dir := t.TempDir()
	if f, err := OpenRules(filepath.Join(dir, "missing.yaml"), nil, nil); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, %v", f, err)
	}
	path := filepath.Join(dir, "rules.yaml")
	rtWriteFile(t, path, []byte(rtRule("threshold: 0")))
	f, err := OpenRules(path, nil, nil)
	var re *RulesError
	if err == nil || !errors.As(err, &re) || re.Line != 4 || re.File != path {
		t.Errorf("invalid file: %v, %v", f, err)
	}
	rtWriteFile(t, path, []byte(rtPad("", MaxRulesFileSize+1)))
	if _, err := OpenRules(path, nil, nil); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("large file: %v", err)
	}
	// An empty file is valid: no rules.
	rtWriteFile(t, path, nil)
	f, err = OpenRules(path, nil, nil)
	if err != nil {
		t.Fatalf("empty file: %v", err)
	}
	defer f.Close()
	if cur := f.Current(); cur.Mode != ModeEnforce || len(cur.Rules) != 0 {
		t.Errorf("empty file: %+v", cur)
	}
}

func TestRulesFileWriteInPlace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	rtWriteFile(t, path, rtRules(1))
	f := rtOpen(t, path, 0)
	first := f.Current()

	rtWriteFile(t, path, rtRulesN(2))
	rtWait(t, "two rules", func() bool { return len(f.Current().Rules) == 2 })
	rtWriteFile(t, path, rtRules(2))
	got := f.waitThreshold(t, 2)
	if got == first {
		t.Fatal("Current() did not change")
	}
	if first.Rules[0].Threshold != 1 {
		t.Error("the previous Rules value was modified")
	}
	if ok := f.reloads(t, "ok"); ok != 2 {
		t.Errorf("reloads ok = %v, want 2", ok)
	}
	if n := f.loaded(t); n != 1 {
		t.Errorf("rules_loaded = %v, want 1", n)
	}
	if !strings.Contains(f.log.String(), "rules reloaded") {
		t.Errorf("log:\n%s", f.log)
	}
	// Touching the file, or writing the same bytes, changes nothing.
	now := time.Now().Add(time.Minute)
	if err := os.Chtimes(path, now, now); err != nil {
		t.Fatal(err)
	}
	rtWriteFile(t, path, rtRules(2))
	rtQuiet()
	if n := len(f.changed()); n != 2 || f.Current() != got || f.reloads(t, "ok") != 2 {
		t.Errorf("an unchanged file was applied again: %d changes, ok %v", n, f.reloads(t, "ok"))
	}
}

func TestRulesFileRefusesInvalid(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	rtWriteFile(t, path, rtRules(1))
	f := rtOpen(t, path, 0)
	good := f.Current()

	rtWriteFile(t, path, []byte(rtRule("threshold: 0", "class: nope")))
	rtWait(t, "reloads_total{result=invalid} 1", func() bool { return f.reloads(t, "invalid") == 1 })
	if f.Current() != good {
		t.Fatalf("the previous rules are not in force: %+v", f.Current())
	}
	if n := len(f.changed()); n != 0 {
		t.Errorf("onChange called %d times for an invalid file", n)
	}
	if ok, n := f.reloads(t, "ok"), f.loaded(t); ok != 0 || n != 1 {
		t.Errorf("reloads ok %v, rules_loaded %v; want 0 and 1", ok, n)
	}
	if v := rtMetric(t, f.reg, "logtally_detector_rules_file_valid"); v != 0 {
		t.Errorf("rules_file_valid %v while the file is refused, want 0", v)
	}
	log := f.log.String()
	for _, want := range []string{"[ERROR]", "rules file refused; the previous rules stay in force",
		path + ":4:", "threshold must be positive", path + ":6:", "unknown class"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}

	// The same bad bytes again are not counted again.
	now := time.Now().Add(time.Minute)
	_ = os.Chtimes(path, now, now)
	rtQuiet()
	if n := f.reloads(t, "invalid"); n != 1 {
		t.Errorf("reloads invalid = %v after a touch, want 1", n)
	}

	// Another bad version is.
	rtWriteFile(t, path, []byte("mode: [\n"))
	rtWait(t, "reloads_total{result=invalid} 2", func() bool { return f.reloads(t, "invalid") == 2 })
	if !strings.Contains(f.log.String(), path+":1: did not find expected node content") {
		t.Errorf("log:\n%s", f.log)
	}

	// Back to the rules in force: nothing to apply.
	rtWriteFile(t, path, rtRules(1))
	rtWait(t, "the log to say so", func() bool { return strings.Contains(f.log.String(), "back to the rules in force") })
	if v := rtMetric(t, f.reg, "logtally_detector_rules_file_valid"); v != 1 {
		t.Errorf("rules_file_valid %v with the rules in force back, want 1", v)
	}
	if f.Current() != good || len(f.changed()) != 0 || f.reloads(t, "ok") != 0 {
		t.Errorf("the rules in force were applied again")
	}

	// A fixed file is applied.
	rtWriteFile(t, path, rtRules(2))
	f.waitThreshold(t, 2)
	if ok, invalid := f.reloads(t, "ok"), f.reloads(t, "invalid"); ok != 1 || invalid != 2 {
		t.Errorf("reloads ok %v invalid %v, want 1 and 2", ok, invalid)
	}

	// So is a file that grew too large refused.
	rtWriteFile(t, path, []byte(rtPad(string(rtRules(3)), MaxRulesFileSize+10)))
	rtWait(t, "reloads_total{result=invalid} 3", func() bool { return f.reloads(t, "invalid") == 3 })
	if f.Current().Rules[0].Threshold != 2 {
		t.Errorf("a file over the limit was applied")
	}
}

func TestRulesFileAtomicRename(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	rtWriteFile(t, path, rtRules(1))
	f := rtOpen(t, path, 0)
	for n := uint64(2); n <= 4; n++ { // the watch follows the new file every time
		rtReplace(t, path, rtRules(n))
		f.waitThreshold(t, n)
	}
	// A refused version by rename, then a good one.
	rtReplace(t, path, []byte("rules: 5\n"))
	rtWait(t, "the refusal", func() bool { return f.reloads(t, "invalid") == 1 })
	rtReplace(t, path, rtRules(5))
	f.waitThreshold(t, 5)
	if n := len(f.changed()); n != 4 {
		t.Errorf("%d changes, want 4", n)
	}
}

// rtConfigMap lays out a directory as the kubelet mounts a ConfigMap:
//
//	..2026_01_01_00_00_00.1/rules.yaml
//	..data -> ..2026_01_01_00_00_00.1
//	rules.yaml -> ..data/rules.yaml
//
// and swap updates it the same way: a new timestamped directory, a symlink
// ..data_tmp to it renamed over ..data, the old directory removed.
type rtConfigMap struct {
	t   *testing.T
	dir string
	cur string
	n   int
}

func newRTConfigMap(t *testing.T, data []byte) *rtConfigMap {
	c := &rtConfigMap{t: t, dir: t.TempDir()}
	c.cur = c.version(data)
	if err := os.Symlink(c.cur, filepath.Join(c.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..data", "rules.yaml"), filepath.Join(c.dir, "rules.yaml")); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *rtConfigMap) path() string { return filepath.Join(c.dir, "rules.yaml") }

func (c *rtConfigMap) version(data []byte) string {
	c.n++
	name := fmt.Sprintf("..2026_01_01_00_00_%02d.%d", c.n, 1000+c.n)
	if err := os.Mkdir(filepath.Join(c.dir, name), 0o755); err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.dir, name, "rules.yaml"), data, 0o644); err != nil {
		c.t.Fatal(err)
	}
	return name
}

func (c *rtConfigMap) swap(data []byte) { c.swapKeep(data, false) }

// swapKeep is swap, keeping the old directory when keep is set: then only
// the change of ..data in the directory says the file changed.
func (c *rtConfigMap) swapKeep(data []byte, keep bool) {
	old := c.cur
	c.cur = c.version(data)
	tmp := filepath.Join(c.dir, "..data_tmp")
	if err := os.Symlink(c.cur, tmp); err != nil {
		c.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(c.dir, "..data")); err != nil {
		c.t.Fatal(err)
	}
	if keep {
		return
	}
	if err := os.RemoveAll(filepath.Join(c.dir, old)); err != nil {
		c.t.Fatal(err)
	}
}

func TestRulesFileConfigMapSwap(t *testing.T) {
	cm := newRTConfigMap(t, rtRules(1))
	f := rtOpen(t, cm.path(), 0) // events only: the poll is an hour
	if f.Current().Rules[0].Threshold != 1 {
		t.Fatalf("initial rules: %+v", f.Current())
	}
	for n := uint64(2); n <= 4; n++ {
		cm.swap(rtRules(n))
		f.waitThreshold(t, n)
	}
	cm.swap([]byte(rtRule("range: 90s")))
	rtWait(t, "the refusal", func() bool { return f.reloads(t, "invalid") == 1 })
	if f.Current().Rules[0].Threshold != 4 {
		t.Errorf("an invalid ConfigMap version was applied")
	}
	if log := f.log.String(); !strings.Contains(log, cm.path()+":3:") || !strings.Contains(log, "range must be a whole number of minutes") {
		t.Errorf("log:\n%s", log)
	}
	cm.swap(rtRules(5))
	f.waitThreshold(t, 5)
	if ok := f.reloads(t, "ok"); ok != 4 {
		t.Errorf("reloads ok = %v, want 4", ok)
	}
}

func TestRulesFileConfigMapSwapKeepingOldVersions(t *testing.T) {
	cm := newRTConfigMap(t, rtRules(1))
	f := rtOpen(t, cm.path(), 0)
	for n := uint64(2); n <= 3; n++ {
		cm.swapKeep(rtRules(n), true)
		f.waitThreshold(t, n)
	}
}

// A symlink to a file in another directory: changes to the target are
// noticed through the watch of the file, renewed after each replacement.
func TestRulesFileSymlinkElsewhere(t *testing.T) {
	target := filepath.Join(t.TempDir(), "real.yaml")
	rtWriteFile(t, target, rtRules(1))
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	f := rtOpen(t, path, 0)
	rtWriteFile(t, target, rtRules(2))
	f.waitThreshold(t, 2)
	rtReplace(t, target, rtRules(3)) // a new file: the watch must move to it
	f.waitThreshold(t, 3)
	rtWriteFile(t, target, rtRules(4))
	f.waitThreshold(t, 4)
	// The link itself pointed elsewhere.
	other := filepath.Join(filepath.Dir(target), "other.yaml")
	rtWriteFile(t, other, rtRules(5))
	tmp := path + ".tmp"
	if err := os.Symlink(other, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	f.waitThreshold(t, 5)
	rtWriteFile(t, other, rtRules(6))
	f.waitThreshold(t, 6)
}

func TestRulesFileDeleted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	rtWriteFile(t, path, rtRules(1))
	f := rtOpen(t, path, 50*time.Millisecond) // the poll also reads the missing file
	good := f.Current()

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	rtWait(t, "the log to say it", func() bool {
		return strings.Contains(f.log.String(), "rules file cannot be read; the previous rules stay in force")
	})
	if f.Current() != good {
		t.Fatal("the rules changed when the file went away")
	}
	if n := f.reloads(t, "invalid"); n != 1 {
		t.Errorf("reloads invalid = %v, want 1", n)
	}
	time.Sleep(4 * 50 * time.Millisecond) // several polls of the missing file
	if n := f.reloads(t, "invalid"); n != 1 {
		t.Errorf("reloads invalid = %v after more polls, want 1: a missing file counts once", n)
	}
	if strings.Count(f.log.String(), "cannot be read") != 1 {
		t.Errorf("logged more than once:\n%s", f.log)
	}

	// Back with the same content: nothing to apply; with new content: applied.
	rtReplace(t, path, rtRules(1)) // by rename: the short poll could read a file being written
	rtWait(t, "the file back", func() bool { return strings.Contains(f.log.String(), "back to the rules in force") })
	if f.Current() != good || len(f.changed()) != 0 {
		t.Error("the same rules were applied again")
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	rtWait(t, "the second removal", func() bool { return f.reloads(t, "invalid") == 2 })
	rtReplace(t, path, rtRules(2))
	f.waitThreshold(t, 2)
}

func TestRulesFileClose(t *testing.T) {
	running := func() int {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		return bytes.Count(buf, []byte("detector.(*RulesFile).run("))
	}
	before := running()
	path := filepath.Join(t.TempDir(), "rules.yaml")
	rtWriteFile(t, path, rtRules(1))
	f := rtOpen(t, path, 20*time.Millisecond)
	rtWait(t, "the watch goroutine", func() bool { return running() == before+1 })
	rtReplace(t, path, rtRules(2))
	f.waitThreshold(t, 2)

	done := make(chan error, 1)
	go func() { done <- f.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close does not return")
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	rtWait(t, "the watch goroutine to end", func() bool { return running() == before })
	rtWriteFile(t, path, rtRules(3))
	rtReplace(t, path, rtRules(4))
	rtQuiet()
	if n := len(f.changed()); n != 1 {
		t.Errorf("onChange called %d times, want 1: called after Close", n)
	}
	if got := f.Current().Rules[0].Threshold; got != 2 {
		t.Errorf("Current() changed after Close: threshold %d", got)
	}
}

func TestRulesFileOptions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	rtWriteFile(t, path, rtRulesN(2))
	reg := prometheus.NewRegistry()
	a, err := OpenRules(path, nil, nil, WithRegisterer(reg), WithPollInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if a.poll != DefaultRulesPollInterval {
		t.Errorf("poll %v, want the default %v", a.poll, DefaultRulesPollInterval)
	}
	// A second RulesFile on the same registry shares the collectors.
	b, err := OpenRules(path, nil, nil, WithRegisterer(reg), WithPollInterval(-time.Second))
	if err != nil {
		t.Fatalf("a second RulesFile on one registry: %v", err)
	}
	defer b.Close()
	if a.reloads != b.reloads || a.loaded != b.loaded {
		t.Error("the collectors are not shared")
	}
	if got := rtMetric(t, reg, "logtally_detector_rules_loaded"); got != 2 {
		t.Errorf("rules_loaded = %v", got)
	}
	// Without a registerer the metrics still work, unregistered.
	c, err := OpenRules(path, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.reloads == nil || c.loaded == nil {
		t.Error("no metrics without a registerer")
	}
}
