// Package decisions is the durable state of bans: one KV entry per active
// decision, with a TTL of its duration, and an audit stream of every
// decision made, deleted or expired. The detector writes it; the query
// target serves it to bouncers and the API. Both go through Store.
package decisions

import (
	"net/netip"
	"strings"
	"time"
)

// Decision is one ban of a key (an address or a prefix).
type Decision struct {
	// ID is the KV revision that created the decision: unique, increasing,
	// and the integer id bouncers expect.
	ID        uint64    `json:"id"`
	Rule      string    `json:"rule"`
	Key       string    `json:"key"` // netip.Prefix: /32 or /128 for an address
	Count     uint64    `json:"count"`
	Threshold uint64    `json:"threshold"`
	Class     string    `json:"class,omitempty"`
	Range     string    `json:"range,omitempty"`  // the rule's sliding range
	Window    string    `json:"window,omitempty"` // the evaluated range [from, to)
	Origin    string    `json:"origin"`           // "logtally" (a rule) or "manual"
	Reason    string    `json:"reason,omitempty"`
	By        string    `json:"by"` // detector instance, or the API's caller
	Created   time.Time `json:"created"`
	Until     time.Time `json:"until"`
	Offence   int       `json:"offence"` // earlier offences of the key under the rule within the lookback
	Simulated bool      `json:"simulated,omitempty"`
}

// Prefix is the decision's key as a prefix.
func (d *Decision) Prefix() netip.Prefix {
	p, _ := netip.ParsePrefix(d.Key)
	return p
}

// Value is the key as bouncers want it: a bare address for a single
// address, else the prefix.
func (d *Decision) Value() string {
	p := d.Prefix()
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// Scope is CrowdSec's scope of the value: "Ip" or "Range".
func (d *Decision) Scope() string {
	if d.Prefix().IsSingleIP() {
		return "Ip"
	}
	return "Range"
}

// Left is the time left at now (0 when expired).
func (d *Decision) Left(now time.Time) time.Duration { return max(d.Until.Sub(now), 0) }

// ManualRule is the rule name of decisions made by hand.
const ManualRule = "manual"

// kvKey is the KV key of the active decision of rule for key: the rule,
// then the prefix with its separators spelled in characters KV keys allow
// ("203.0.113.7/32" → "203_0_113_7-32", "2001:db8::/64" → "2001=db8==-64").
func kvKey(rule string, key netip.Prefix) string {
	r := strings.NewReplacer(".", "_", ":", "=", "/", "-")
	return "d." + rule + "." + r.Replace(key.String())
}

// offenceKey holds the recent offence times of (rule, key), for escalation.
func offenceKey(rule string, key netip.Prefix) string {
	return "o" + kvKey(rule, key)[1:]
}
