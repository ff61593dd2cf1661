package format

import (
	"net/netip"
	"testing"
	"time"
)

func addSeeds(f *testing.F, only Format, all bool) {
	for _, tc := range cases {
		if all || tc.f == only || tc.f == Auto {
			f.Add([]byte(tc.line))
		}
	}
	f.Add([]byte(benchCombined))
	f.Add([]byte(benchJSON))
	f.Add([]byte(benchSyslog))
}

// checkInvariants holds for every line in every format: no panic, and any
// accepted record is canonical and not beyond the future bound.
func checkInvariants(t *testing.T, p *Parser, line []byte, f Format) {
	var rec Record
	err := p.Parse(line, f, recv, &rec)
	if err != nil {
		if rec.Addr.IsValid() || !rec.Time.IsZero() {
			t.Fatalf("%v: record not zeroed on error %v: %+v", f, err, rec)
		}
		if len(err.Error()) > 400 {
			t.Fatalf("%v: error text too long: %d bytes", f, len(err.Error()))
		}
		return
	}
	switch {
	case !rec.Addr.IsValid():
		t.Fatalf("%v %q: invalid Addr", f, line)
	case rec.Addr.Zone() != "":
		t.Fatalf("%v %q: Addr has zone %q", f, line, rec.Addr.Zone())
	case rec.Addr != rec.Addr.Unmap():
		t.Fatalf("%v %q: Addr %v not unmapped", f, line, rec.Addr)
	case rec.Time.Location() != time.UTC:
		t.Fatalf("%v %q: Time location %v", f, line, rec.Time.Location())
	case rec.Time.After(recv.Add(DefaultMaxFuture)):
		t.Fatalf("%v %q: Time %v beyond MaxFuture", f, line, rec.Time)
	case rec.Status > 999:
		t.Fatalf("%v %q: Status %d", f, line, rec.Status)
	case f != Auto && f != Syslog && rec.AuthFailure != AuthFailureStatus(rec.Status):
		t.Fatalf("%v %q: AuthFailure %v with status %d", f, line, rec.AuthFailure, rec.Status)
	}
}

func FuzzParse(f *testing.F) {
	addSeeds(f, Auto, true)
	p := New(Options{})
	f.Fuzz(func(t *testing.T, line []byte) {
		for _, fm := range []Format{Auto, CLF, VHostCombined, Syslog, JSON, Fallback} {
			checkInvariants(t, p, line, fm)
		}
	})
}

func FuzzParseCLF(f *testing.F) {
	addSeeds(f, CLF, false)
	p := New(Options{})
	f.Fuzz(func(t *testing.T, line []byte) { checkInvariants(t, p, line, CLF) })
}

func FuzzParseSyslog(f *testing.F) {
	addSeeds(f, Syslog, false)
	p := New(Options{})
	f.Fuzz(func(t *testing.T, line []byte) { checkInvariants(t, p, line, Syslog) })
}

func FuzzParseJSON(f *testing.F) {
	addSeeds(f, JSON, false)
	p := New(Options{})
	f.Fuzz(func(t *testing.T, line []byte) { checkInvariants(t, p, line, JSON) })
}

// FuzzAddr cross-checks the hand-written address parser against netip.
func FuzzAddr(f *testing.F) {
	for _, s := range []string{"1.2.3.4", "01.2.3.4", "999.1.1.1", "::ffff:1.2.3.4", "fe80::1%eth0", "[2001:db8::1]", "1.2.3", "1.2.3.4.5", "::", "1:2:3:4:5:6:7:8"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, ok := parseAddr([]byte(s))
		if ok && (a.Zone() != "" || a != a.Unmap()) {
			t.Fatalf("%q: non-canonical %v", s, a)
		}
		if len(s) > 64 || (len(s) > 0 && s[0] == '[') {
			return
		}
		n, err := netip.ParseAddr(s)
		if (err == nil) != ok || (ok && n.WithZone("").Unmap() != a) {
			t.Fatalf("%q: parseAddr = %v, %v; netip = %v, %v", s, a, ok, n, err)
		}
	})
}
