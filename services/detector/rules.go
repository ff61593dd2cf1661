package detector

// The rules file (-rules.file, docs/rules.md): parsing, validation, keys,
// escalation, and a RulesFile that reloads the file when it changes.

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/logtally/logtally/internal/counts"
	"github.com/logtally/logtally/internal/windows"
)

// Rules is a parsed, validated rules file.
type Rules struct {
	Mode  Mode           // ModeEnforce (default when absent) or ModeSimulate
	Allow []netip.Prefix // never banned, also not by hand; single addresses become /32 or /128
	Rules []Rule
}

// Mode says whether decisions are served.
type Mode string

const (
	// ModeEnforce serves decisions to bouncers and outputs.
	ModeEnforce Mode = "enforce"
	// ModeSimulate records and lists decisions (flagged simulated) but
	// never serves them.
	ModeSimulate Mode = "simulate"
)

// KeyKind is what a rule counts and bans: a single address or a prefix.
type KeyKind string

const (
	// KeyIP decides single addresses (/32, /128).
	KeyIP KeyKind = "ip"
	// KeyPrefix decides prefixes of PrefixV4 / PrefixV6 bits.
	KeyPrefix KeyKind = "prefix"
)

// Rule is one entry of rules:.
type Rule struct {
	Name       string        // required, unique, [a-z0-9][a-z0-9_-]{0,62}
	Key        KeyKind       // KeyIP (default) or KeyPrefix
	PrefixV4   int           // prefix_v4, 1..32, only with key: prefix (default 24)
	PrefixV6   int           // prefix_v6, 1..128, only with key: prefix (default 64)
	Range      time.Duration // whole minutes, 1m..24h: the sliding range, current minute included
	Threshold  uint64        // > 0; a decision when the count over Range is above it
	Ban        time.Duration // the first ban, ≥ 1s
	Class      counts.Class  // the counter compared (default requests)
	Escalation Escalation    // repeat offenders; defaults filled in
	Line       int           // where the rule starts in the file (for messages)
}

// Escalation lengthens the bans of repeat offenders: offence n (0 for the
// first within Lookback) is banned Ban × Factor^n, at most Max.
type Escalation struct {
	Factor   float64       // ≥ 1; 1 = no escalation (default 2)
	Max      time.Duration // ≥ Ban (default 7 days, or Ban when longer)
	Lookback time.Duration // ≥ Range; earlier offences counted within it (default 2 × Max)
}

// Limits and defaults of the schema.
const (
	DefaultPrefixV4         = 24
	DefaultPrefixV6         = 64
	DefaultEscalationFactor = 2.0
	DefaultEscalationMax    = 7 * 24 * time.Hour
	MaxRange                = 24 * time.Hour
	MaxRulesDuration        = 3650 * 24 * time.Hour // ban, max, lookback
	MaxRulesFileSize        = 4 << 20
	maxReportedRulesErrors  = 20
)

var ruleNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// RulesError is one problem of a rules file. Line and Column are 1-based
// (0 when unknown). Error() reads "file:line: message"; ParseRules joins
// several with errors.Join, so errors.As finds the first.
type RulesError struct {
	File   string
	Line   int
	Column int
	Msg    string
}

func (e *RulesError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

type rulesParser struct {
	name string
	errs []error
	more int
}

func (p *rulesParser) errAt(line, col int, format string, args ...any) {
	if len(p.errs) >= maxReportedRulesErrors {
		p.more++
		return
	}
	p.errs = append(p.errs, &RulesError{File: p.name, Line: line, Column: col, Msg: fmt.Sprintf(format, args...)})
}

func (p *rulesParser) errf(n *yaml.Node, format string, args ...any) {
	line, col := 0, 0
	if n != nil {
		line, col = n.Line, n.Column
	}
	p.errAt(line, col, format, args...)
}

func (p *rulesParser) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	if p.more > 0 {
		p.errs = append(p.errs, &RulesError{File: p.name, Msg: fmt.Sprintf("and %d more problems", p.more)})
	}
	if len(p.errs) == 1 {
		return p.errs[0]
	}
	return errors.Join(p.errs...)
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlError turns a yaml.v3 syntax error into a RulesError. yaml.v3's
// "line N" is not the line of the problem: it is where the enclosing
// block starts, counted from 0 (and left out when that is the first line),
// so the line is found again (yamlProblemLine).
func (p *rulesParser) yamlError(data []byte, err error) {
	msg := yamlProblem(err)
	p.errAt(yamlProblemLine(data, msg), 0, "%s", msg)
}

// yamlProblem is a yaml.v3 error's message without "yaml: line N: ".
func yamlProblem(err error) string {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		return m[2]
	}
	return strings.TrimPrefix(msg, "yaml: ")
}

// yamlProblemLine is the 1-based line of a syntax error msg of data: the
// first line whose addition makes the file's beginning fail with msg (a
// binary search, so a 4 MiB file is decoded some 20 times), 0 if not found.
func yamlProblemLine(data []byte, msg string) int {
	lines := bytes.SplitAfter(data, []byte("\n"))
	fails := func(n int) bool {
		dec := yaml.NewDecoder(bytes.NewReader(bytes.Join(lines[:n], nil)))
		for {
			var doc yaml.Node
			if err := dec.Decode(&doc); err != nil {
				return !errors.Is(err, io.EOF) && yamlProblem(err) == msg
			}
		}
	}
	lo, hi := 0, len(lines) // fails(lo) is false: an empty file is valid
	if !fails(hi) {
		return 0
	}
	for hi-lo > 1 {
		if mid := (lo + hi) / 2; fails(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi
}

// checkTabs reports lines indented with tabs, which YAML forbids (yaml.v3's
// own message for them is "found character that cannot start any token").
func (p *rulesParser) checkTabs(data []byte) {
	for i, line := range bytes.Split(data, []byte("\n")) {
		rest := bytes.TrimLeft(line, " \t")
		indent := line[:len(line)-len(rest)]
		if bytes.IndexByte(indent, '\t') < 0 {
			continue
		}
		rest = bytes.TrimRight(rest, " \t\r")
		if len(rest) == 0 || rest[0] == '#' {
			continue
		}
		p.errAt(i+1, bytes.IndexByte(indent, '\t')+1, "tab in indentation: YAML indents with spaces")
	}
}

// ParseRules parses and validates a rules file's bytes; name is the file
// name used in messages. An empty file (or one of comments only) is valid:
// mode enforce, no allow list, no rules. Unknown keys and values are errors.
func ParseRules(name string, data []byte) (*Rules, error) {
	p := &rulesParser{name: name}
	if len(data) > MaxRulesFileSize {
		p.errAt(0, 0, "file is larger than %d bytes", MaxRulesFileSize)
		return nil, p.err()
	}
	p.checkTabs(data)
	if err := p.err(); err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return &Rules{Mode: ModeEnforce}, nil
		}
		p.yamlError(data, err)
		return nil, p.err()
	}
	var second yaml.Node
	if err := dec.Decode(&second); err == nil {
		p.errf(&second, "only one YAML document is allowed")
		return nil, p.err()
	} else if !errors.Is(err, io.EOF) {
		p.yamlError(data, err)
		return nil, p.err()
	}
	rules := p.file(&doc)
	if err := p.err(); err != nil {
		return nil, err
	}
	return rules, nil
}

func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// fields reads a mapping's keys, reporting unknown and repeated ones.
func (p *rulesParser) fields(n *yaml.Node, where string, known []string) map[string]*yaml.Node {
	out := map[string]*yaml.Node{}
	keyLine := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			p.errf(k, "%skeys must be names", where)
			continue
		}
		if !containsString(known, k.Value) {
			p.errf(k, "%sunknown key %q (want %s)", where, k.Value, strings.Join(known, ", "))
			continue
		}
		if first, dup := keyLine[k.Value]; dup {
			p.errf(k, "%s%s is given twice (first at line %d)", where, k.Value, first)
			continue
		}
		keyLine[k.Value] = k.Line
		out[k.Value] = v
	}
	return out
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (p *rulesParser) file(doc *yaml.Node) *Rules {
	r := &Rules{Mode: ModeEnforce}
	top := doc
	if top.Kind == yaml.DocumentNode {
		if len(top.Content) == 0 {
			return r
		}
		top = top.Content[0]
	}
	top = resolve(top)
	if isNull(top) {
		return r
	}
	if top.Kind != yaml.MappingNode {
		p.errf(top, "the file must be a mapping of mode, allow and rules")
		return r
	}
	f := p.fields(top, "", []string{"mode", "allow", "rules"})
	if n := f["mode"]; !isNull(n) {
		if n.Kind == yaml.ScalarNode && (n.Value == string(ModeEnforce) || n.Value == string(ModeSimulate)) {
			r.Mode = Mode(n.Value)
		} else {
			p.errf(n, "mode must be enforce or simulate, got %s", describe(n))
		}
	} else if n != nil {
		p.errf(n, "mode must be enforce or simulate, got nothing")
	}
	if n := f["allow"]; !isNull(n) {
		r.Allow = p.allow(n)
	}
	if n := f["rules"]; !isNull(n) {
		if n.Kind != yaml.SequenceNode {
			p.errf(n, "rules must be a list of rules")
		} else {
			first := map[string]int{}
			for i, rn := range n.Content {
				rule, ok := p.rule(i+1, resolve(rn))
				if !ok {
					continue
				}
				if line, dup := first[rule.Name]; dup {
					p.errAt(rule.Line, 0, "rule %q: duplicate name (first at line %d)", rule.Name, line)
					continue
				}
				first[rule.Name] = rule.Line
				r.Rules = append(r.Rules, rule)
			}
		}
	}
	return r
}

// describe writes a node's value for a message.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.ShortTag() == "!!null" {
			return "nothing"
		}
		return strconv.Quote(n.Value)
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return "an unexpected value"
}

func (p *rulesParser) allow(n *yaml.Node) []netip.Prefix {
	if n.Kind != yaml.SequenceNode {
		p.errf(n, "allow must be a list of addresses and CIDR prefixes")
		return nil
	}
	var out []netip.Prefix
	for _, en := range n.Content {
		en = resolve(en)
		if en.Kind != yaml.ScalarNode || isNull(en) {
			p.errf(en, "allow: want an address or a CIDR prefix, got %s", describe(en))
			continue
		}
		pfx, err := parseAllowEntry(en.Value)
		if err != nil {
			p.errf(en, "allow: %v", err)
			continue
		}
		out = append(out, pfx)
	}
	return out
}

// parseAllowEntry reads "198.51.100.7", "198.51.100.0/28", "2001:db8::/48".
func parseAllowEntry(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR prefix", s)
		}
		if pfx.Addr().Is4In6() && pfx.Bits() >= 96 {
			pfx = netip.PrefixFrom(pfx.Addr().Unmap(), pfx.Bits()-96)
		}
		if m := pfx.Masked(); m != pfx {
			return netip.Prefix{}, fmt.Errorf("%q has bits set beyond its prefix length (did you mean %s?)", s, m)
		}
		return pfx, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or a CIDR prefix", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

var ruleKeys = []string{"name", "key", "prefix_v4", "prefix_v6", "range", "threshold", "ban", "class", "escalation"}

func (p *rulesParser) rule(idx int, n *yaml.Node) (Rule, bool) {
	rule := Rule{Line: n.Line, Key: KeyIP, Class: counts.Requests}
	if n.Kind != yaml.MappingNode {
		p.errf(n, "rule %d: want a mapping of %s, got %s", idx, strings.Join(ruleKeys, ", "), describe(n))
		return rule, false
	}
	before := len(p.errs) + p.more
	where := fmt.Sprintf("rule %d: ", idx)
	// The name first, so every other message can name the rule.
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := resolve(n.Content[i]); k.Kind == yaml.ScalarNode && k.Value == "name" {
			v := resolve(n.Content[i+1])
			if v.Kind == yaml.ScalarNode && !isNull(v) && ruleNameRE.MatchString(v.Value) {
				rule.Name = v.Value
				where = fmt.Sprintf("rule %q: ", v.Value)
			}
			break
		}
	}
	f := p.fields(n, where, ruleKeys)
	if v, ok := f["name"]; !ok || isNull(v) {
		p.errf(n, "%sname is required", where)
	} else if rule.Name == "" {
		p.errf(v, "%sname must match [a-z0-9][a-z0-9_-]{0,62}, got %s", where, describe(v))
	}
	if v := f["key"]; !isNull(v) {
		if v.Kind == yaml.ScalarNode && (v.Value == string(KeyIP) || v.Value == string(KeyPrefix)) {
			rule.Key = KeyKind(v.Value)
		} else {
			p.errf(v, "%skey must be ip or prefix, got %s", where, describe(v))
		}
	}
	for _, pf := range []struct {
		name string
		max  int
		def  int
		dst  *int
	}{{"prefix_v4", 32, DefaultPrefixV4, &rule.PrefixV4}, {"prefix_v6", 128, DefaultPrefixV6, &rule.PrefixV6}} {
		v, given := f[pf.name]
		if rule.Key == KeyPrefix {
			*pf.dst = pf.def
		}
		if !given {
			continue
		}
		if rule.Key != KeyPrefix {
			p.errf(v, "%s%s is only allowed with key: prefix", where, pf.name)
			continue
		}
		bits, ok := p.uint(v, where, pf.name)
		if !ok {
			continue
		}
		if bits < 1 || bits > uint64(pf.max) {
			p.errf(v, "%s%s must be between 1 and %d, got %d", where, pf.name, pf.max, bits)
			continue
		}
		*pf.dst = int(bits)
	}
	if v, ok := f["range"]; !ok || isNull(v) {
		p.errf(n, "%srange is required", where)
	} else if d, ok := p.duration(v, where, "range"); ok {
		switch {
		case d%time.Minute != 0:
			p.errf(v, "%srange must be a whole number of minutes, got %s", where, v.Value)
		case d < time.Minute:
			p.errf(v, "%srange must be at least 1m, got %s", where, v.Value)
		case d > MaxRange:
			p.errf(v, "%srange must be at most 24h, got %s", where, v.Value)
		default:
			rule.Range = d
		}
	}
	if v, ok := f["threshold"]; !ok || isNull(v) {
		p.errf(n, "%sthreshold is required", where)
	} else if t, ok := p.uint(v, where, "threshold"); ok {
		if t == 0 {
			p.errf(v, "%sthreshold must be positive", where)
		} else {
			rule.Threshold = t
		}
	}
	if v, ok := f["ban"]; !ok || isNull(v) {
		p.errf(n, "%sban is required", where)
	} else if d, ok := p.duration(v, where, "ban"); ok {
		if d < time.Second {
			p.errf(v, "%sban must be at least 1s, got %s", where, v.Value)
		} else if d > MaxRulesDuration {
			p.errf(v, "%sban must be at most 3650d, got %s", where, v.Value)
		} else {
			rule.Ban = d
		}
	}
	if v := f["class"]; !isNull(v) {
		c, err := counts.ParseClass(v.Value)
		if v.Kind != yaml.ScalarNode || err != nil {
			p.errf(v, "%sunknown class %s: want one of requests, 4xx, 5xx, auth_failure, bytes", where, describe(v))
		} else {
			rule.Class = c
		}
	}
	p.escalation(&rule, f["escalation"], where)
	return rule, len(p.errs)+p.more == before
}

func (p *rulesParser) escalation(rule *Rule, n *yaml.Node, where string) {
	e := Escalation{Factor: DefaultEscalationFactor}
	var maxNode, lookNode *yaml.Node
	if !isNull(n) {
		if n.Kind != yaml.MappingNode {
			p.errf(n, "%sescalation must be a mapping of factor, max, lookback, got %s", where, describe(n))
		} else {
			f := p.fields(n, where+"escalation: ", []string{"factor", "max", "lookback"})
			if v := f["factor"]; !isNull(v) {
				var x float64
				tag := v.ShortTag()
				if v.Kind != yaml.ScalarNode || (tag != "!!int" && tag != "!!float") || v.Decode(&x) != nil || math.IsNaN(x) || math.IsInf(x, 0) {
					p.errf(v, "%sescalation factor must be a number, got %s", where, describe(v))
				} else if x < 1 {
					p.errf(v, "%sescalation factor must be at least 1 (1 = no escalation), got %s", where, v.Value)
				} else {
					e.Factor = x
				}
			}
			if v := f["max"]; !isNull(v) {
				if d, ok := p.duration(v, where, "escalation max"); ok {
					if d > MaxRulesDuration {
						p.errf(v, "%sescalation max must be at most 3650d, got %s", where, v.Value)
					} else {
						e.Max, maxNode = d, v
					}
				}
			}
			if v := f["lookback"]; !isNull(v) {
				if d, ok := p.duration(v, where, "escalation lookback"); ok {
					if d > MaxRulesDuration {
						p.errf(v, "%sescalation lookback must be at most 3650d, got %s", where, v.Value)
					} else {
						e.Lookback, lookNode = d, v
					}
				}
			}
		}
	}
	if maxNode == nil {
		e.Max = max(DefaultEscalationMax, rule.Ban)
	} else if rule.Ban > 0 && e.Max < rule.Ban {
		p.errf(maxNode, "%sescalation max (%s) must be at least ban (%s)", where, maxNode.Value, windows.FormatDuration(rule.Ban))
	}
	if lookNode == nil {
		e.Lookback = max(2*e.Max, rule.Range)
	} else if rule.Range > 0 && e.Lookback < rule.Range {
		p.errf(lookNode, "%sescalation lookback (%s) must be at least range (%s)", where, lookNode.Value, windows.FormatDuration(rule.Range))
	}
	rule.Escalation = e
}

// uint reads a whole, non-negative number.
func (p *rulesParser) uint(v *yaml.Node, where, what string) (uint64, bool) {
	if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int" {
		p.errf(v, "%s%s must be a whole number, got %s", where, what, describe(v))
		return 0, false
	}
	s := strings.TrimPrefix(v.Value, "+")
	if strings.HasPrefix(s, "-") {
		if what == "threshold" {
			p.errf(v, "%sthreshold must be positive", where)
		} else {
			p.errf(v, "%s%s must be positive, got %s", where, what, v.Value)
		}
		return 0, false
	}
	x, err := strconv.ParseUint(s, 0, 64)
	if err != nil {
		p.errf(v, "%s%s is too large: %s", where, what, v.Value)
		return 0, false
	}
	return x, true
}

// duration reads "90s", "5m", "1h30m", "7d".
func (p *rulesParser) duration(v *yaml.Node, where, what string) (time.Duration, bool) {
	if v.Kind != yaml.ScalarNode {
		p.errf(v, "%s%s must be a duration like 90s, 5m, 1h or 7d, got %s", where, what, describe(v))
		return 0, false
	}
	if tag := v.ShortTag(); tag == "!!int" || tag == "!!float" {
		p.errf(v, "%s%s needs a unit, like 5m, got %s", where, what, v.Value)
		return 0, false
	}
	d, err := windows.ParseDuration(v.Value)
	if err != nil || v.ShortTag() != "!!str" {
		p.errf(v, "%s%s must be a duration like 90s, 5m, 1h or 7d, got %s", where, what, describe(v))
		return 0, false
	}
	if d <= 0 {
		p.errf(v, "%s%s must be positive, got %s", where, what, v.Value)
		return 0, false
	}
	return d, true
}

// Allowed reports whether p (an address as a /32 or /128, or a prefix)
// shares an address with an allow entry: it lies inside one, or holds one.
// A ban of a network that holds an allowed address would ban that address
// too (bouncers know no exceptions), so such a network is never banned.
// IPv4-mapped IPv6 addresses count as IPv4. A nil Rules allows nothing.
func (r *Rules) Allowed(p netip.Prefix) bool {
	if r == nil || !p.IsValid() {
		return false
	}
	if a := p.Addr(); a.Is4In6() {
		if p.Bits() < 96 {
			return false
		}
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	p = p.Masked()
	for _, e := range r.Allow {
		if e.Overlaps(p) {
			return true
		}
	}
	return false
}

// AllowedAddr is Allowed for a single address.
func (r *Rules) AllowedAddr(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	a = a.Unmap().WithZone("")
	return r.Allowed(netip.PrefixFrom(a, a.BitLen()))
}

// KeyOf returns the decision key of addr under rule: the address as a /32
// or /128 for key ip, the masked prefix of PrefixV4 / PrefixV6 bits for key
// prefix. IPv4-mapped IPv6 addresses are unmapped first, zones dropped. An
// invalid addr gives the invalid Prefix.
func (rule *Rule) KeyOf(addr netip.Addr) netip.Prefix {
	if !addr.IsValid() {
		return netip.Prefix{}
	}
	addr = addr.Unmap().WithZone("")
	bits := addr.BitLen()
	if rule.Key == KeyPrefix {
		want := rule.PrefixV6
		if addr.Is4() {
			want = rule.PrefixV4
		}
		if want > 0 && want < bits {
			bits = want
		}
	}
	pfx, _ := addr.Prefix(bits)
	return pfx
}

// BanFor is the ban of a key's offence number n (0 for the first within the
// lookback): Ban × Factor^n, rounded to the second, capped at Max.
func (rule *Rule) BanFor(n int) time.Duration {
	limit := max(rule.Escalation.Max, rule.Ban)
	if n <= 0 {
		return rule.Ban
	}
	f := rule.Escalation.Factor
	if !(f > 1) { // also NaN
		return rule.Ban
	}
	d := float64(rule.Ban) * math.Pow(f, float64(n))
	if math.IsInf(d, 0) || math.IsNaN(d) || d >= float64(limit) {
		return limit
	}
	return min(time.Duration(d).Round(time.Second), limit)
}

// RulesOption configures OpenRules.
type RulesOption func(*rulesOptions)

type rulesOptions struct {
	reg  prometheus.Registerer
	poll time.Duration
}

// WithRegisterer registers logtally_detector_rules_reloads_total{result}
// and logtally_detector_rules_loaded on r. Several RulesFiles given the same
// Registerer share the collectors (the first registration wins).
func WithRegisterer(r prometheus.Registerer) RulesOption {
	return func(o *rulesOptions) { o.reg = r }
}

// WithPollInterval sets how often the file is read and compared as a
// fallback to file-system events (default 2s; ≤ 0 keeps the default).
func WithPollInterval(d time.Duration) RulesOption {
	return func(o *rulesOptions) {
		if d > 0 {
			o.poll = d
		}
	}
}

// DefaultRulesPollInterval is the fallback poll of RulesFile.
const DefaultRulesPollInterval = 2 * time.Second

// rulesDebounce is how long a RulesFile waits after an event before it
// reads the file, so an editor's several writes are read once.
const rulesDebounce = 100 * time.Millisecond

// RulesFile holds the rules of a file and reloads them when it changes. It
// watches the file and its directory (fsnotify), so a write in place, an
// editor's write-and-rename, and a Kubernetes ConfigMap's ..data symlink
// swap are noticed, and it reads the file every poll interval as well,
// since inotify misses changes on some volumes. A new version that does not
// parse is refused: the previous rules stay in force, the error is logged
// and counted. The same goes for a file that disappears or cannot be read.
type RulesFile struct {
	path     string
	dir      string
	log      hclog.Logger
	onChange func(*Rules)
	poll     time.Duration

	cur     atomic.Pointer[Rules]
	applied [sha256.Size]byte // content in force
	seen    [sha256.Size]byte // content last read (valid or not)
	missing bool              // the last read failed

	watcher *fsnotify.Watcher
	reloads *prometheus.CounterVec
	loaded  prometheus.Gauge
	valid   prometheus.Gauge

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// OpenRules reads and validates path (an error if it is missing or
// invalid) and follows its changes until Close. onChange (may be nil) is
// called with each new version applied, from one goroutine, never for the
// initial one.
func OpenRules(path string, log hclog.Logger, onChange func(*Rules), opts ...RulesOption) (*RulesFile, error) {
	o := rulesOptions{poll: DefaultRulesPollInterval}
	for _, opt := range opts {
		opt(&o)
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("rules file %s: %w", path, err)
	}
	f := &RulesFile{path: path, dir: filepath.Dir(abs), log: log, onChange: onChange, poll: o.poll,
		stop: make(chan struct{}), done: make(chan struct{})}
	data, err := readRules(path)
	if err != nil {
		return nil, fmt.Errorf("rules file: %w", err)
	}
	rules, err := ParseRules(path, data)
	if err != nil {
		return nil, err
	}
	f.cur.Store(rules)
	f.applied = sha256.Sum256(data)
	f.seen = f.applied
	f.registerMetrics(o.reg)
	f.loaded.Set(float64(len(rules.Rules)))

	if w, err := fsnotify.NewWatcher(); err != nil {
		log.Warn("rules file: no file-system events, polling only", "path", path, "poll", o.poll, "error", err)
	} else {
		if err := w.Add(f.dir); err != nil {
			log.Warn("rules file: cannot watch the directory, polling only", "dir", f.dir, "error", err)
		}
		_ = w.Add(abs) // also the file (through symlinks): catches writes to a target elsewhere
		f.watcher = w
	}
	go f.run(abs)
	return f, nil
}

func (f *RulesFile) registerMetrics(reg prometheus.Registerer) {
	f.reloads = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "logtally_detector_rules_reloads_total",
		Help: "Changes of the rules file read, by result: ok (applied), invalid (refused: the previous rules stay in force)."}, []string{"result"}))
	f.loaded = register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: "logtally_detector_rules_loaded",
		Help: "Rules in force from the rules file."}))
	f.valid = register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: "logtally_detector_rules_file_valid",
		Help: "1 while the rules file holds the rules in force, 0 while it is refused or cannot be read (the previous rules stay in force): alert on 0."}))
	f.reloads.WithLabelValues("ok")
	f.reloads.WithLabelValues("invalid")
	f.valid.Set(1)
}

// register registers c on reg (when set), or returns the collector of the
// same description registered before: several RulesFiles share the series.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if old, ok := are.ExistingCollector.(C); ok {
				return old
			}
		}
	}
	return c
}

// Current returns the rules in force. The value is never modified; a reload
// stores a new one.
func (f *RulesFile) Current() *Rules { return f.cur.Load() }

// Path is the file's path as given to OpenRules.
func (f *RulesFile) Path() string { return f.path }

// Close stops following the file.
func (f *RulesFile) Close() error {
	var err error
	f.closeOnce.Do(func() {
		close(f.stop)
		<-f.done
		if f.watcher != nil {
			err = f.watcher.Close()
		}
	})
	return err
}

func (f *RulesFile) run(abs string) {
	defer close(f.done)
	var events <-chan fsnotify.Event
	var errs <-chan error
	if f.watcher != nil {
		events, errs = f.watcher.Events, f.watcher.Errors
	}
	base := filepath.Base(abs)
	poll := time.NewTicker(f.poll)
	defer poll.Stop()
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	for {
		select {
		case <-f.stop:
			debounce.Stop()
			return
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			// In the directory: the file itself, or anything else that may
			// be a link in its path (Kubernetes' ..data, ..2024_…).
			name := filepath.Base(ev.Name)
			if ev.Name == abs || name == base || strings.HasPrefix(name, "..") || filepath.Dir(ev.Name) != f.dir {
				debounce.Reset(rulesDebounce)
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			f.log.Warn("rules file: watch error (the poll still reads the file)", "path", f.path, "error", err)
		case <-debounce.C:
			f.reload()
			if f.watcher != nil {
				_ = f.watcher.Add(abs) // after a rename or a swap, watch the new file
			}
		case <-poll.C:
			f.reload()
		}
	}
}

func readRules(path string) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, MaxRulesFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return data, nil
}

// reload reads the file and applies it if it changed and is valid. Only
// the run goroutine calls it.
func (f *RulesFile) reload() {
	data, err := readRules(f.path)
	if err != nil {
		if !f.missing {
			f.missing = true
			f.reloads.WithLabelValues("invalid").Inc()
			f.valid.Set(0)
			f.log.Error("rules file cannot be read; the previous rules stay in force", "path", f.path, "error", err)
		}
		return
	}
	sum := sha256.Sum256(data)
	if sum == f.seen && !f.missing {
		return
	}
	f.missing = false
	f.seen = sum
	if sum == f.applied {
		f.valid.Set(1)
		f.log.Info("rules file is back to the rules in force", "path", f.path)
		return
	}
	rules, err := ParseRules(f.path, data)
	if err != nil {
		f.reloads.WithLabelValues("invalid").Inc()
		f.valid.Set(0)
		f.log.Error("rules file refused; the previous rules stay in force", "path", f.path, "error", err)
		return
	}
	f.cur.Store(rules)
	f.applied = sum
	f.reloads.WithLabelValues("ok").Inc()
	f.loaded.Set(float64(len(rules.Rules)))
	f.valid.Set(1)
	f.log.Info("rules reloaded", "path", f.path, "rules", len(rules.Rules), "allow", len(rules.Allow), "mode", string(rules.Mode))
	if f.onChange != nil {
		f.onChange(rules)
	}
}
