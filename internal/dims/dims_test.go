package dims

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestKeyRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		d      Dim
		v      string
		hashed bool
	}{
		{Status, "404", false},
		{Method, "GET", false},
		{Path, "/", false},
		{Path, "/abcdefghijklm", false}, // 14 bytes: the longest inline value
		{Path, "/abcdefghijklmn", true}, // 15 bytes
		{Path, "/a\x00b", true},         // a zero byte cannot be padding
		{UA, "Chrome", false},
		{VHost, strings.Repeat("h", 300), true},
	} {
		k, hashed := Key(tc.d, []byte(tc.v))
		if hashed != tc.hashed {
			t.Fatalf("%s %q: hashed %v, want %v", tc.d, tc.v, hashed, tc.hashed)
		}
		d, text, h := Decode(k)
		if d != tc.d || h != tc.hashed {
			t.Fatalf("%s %q: decoded %s hashed %v", tc.d, tc.v, d, h)
		}
		if !tc.hashed && text != tc.v {
			t.Fatalf("%s %q: decoded %q", tc.d, tc.v, text)
		}
		if tc.hashed {
			sum := sha256.Sum256([]byte(tc.v))
			if want := hex.EncodeToString(append([]byte{byte(tc.d)}, sum[:14]...)); NameKey(k) != want {
				t.Fatalf("name key %s, want %s", NameKey(k), want)
			}
		}
		a := netip.AddrFrom16(k)
		if !Range(tc.d).Contains(a) || a.Is4In6() {
			t.Fatalf("%s %q: key %s outside %s or read as IPv4", tc.d, tc.v, a, Range(tc.d))
		}
		for _, o := range All {
			if o != tc.d && Range(o).Contains(a) {
				t.Fatalf("%s key inside %s's range", tc.d, o)
			}
		}
	}
	// Distinct values never share a key.
	a, _ := Key(Path, []byte("/abcdefghijklmn/1"))
	b, _ := Key(Path, []byte("/abcdefghijklmn/2"))
	c, _ := Key(VHost, []byte("/abcdefghijklmn/1"))
	if a == b || a == c {
		t.Fatal("distinct values or fields share a key")
	}
}

func TestParse(t *testing.T) {
	for _, d := range All {
		got, err := Parse(d.String())
		if err != nil || got != d {
			t.Fatalf("Parse(%q) = %v, %v", d, got, err)
		}
	}
	if _, err := Parse("referer"); !errors.Is(err, ErrUnknownDim) || !strings.Contains(err.Error(), "status, method, path") {
		t.Fatalf("Parse(referer): %v", err)
	}
}

func TestParseNameKey(t *testing.T) {
	k, hashed := Key(Path, []byte("/a/path/longer/than/fourteen/bytes"))
	if !hashed {
		t.Fatal("want a hashed key")
	}
	got, ok := ParseNameKey(NameKey(k))
	if !ok || got != k {
		t.Fatalf("ParseNameKey(NameKey(k)) = %x, %v; want %x", got, ok, k)
	}
	for _, bad := range []string{"", "zz", NameKey(k)[2:], NameKey(k) + "00"} {
		if _, ok := ParseNameKey(bad); ok {
			t.Errorf("ParseNameKey(%q) accepted", bad)
		}
	}
}
