package format

import (
	"bytes"
	"strings"
	"testing"
)

func TestStatusClasses(t *testing.T) {
	for _, tc := range []struct {
		status           uint32
		c4xx, c5xx, auth bool
	}{
		{0, false, false, false},
		{200, false, false, false},
		{302, false, false, false},
		{399, false, false, false},
		{400, true, false, false},
		{401, true, false, true},
		{403, true, false, false},
		{404, true, false, false},
		{407, true, false, true},
		{499, true, false, false},
		{500, false, true, false},
		{503, false, true, false},
		{599, false, true, false},
		{600, false, false, false},
		{999, false, false, false},
	} {
		if got := Status4xx(tc.status); got != tc.c4xx {
			t.Errorf("Status4xx(%d) = %v", tc.status, got)
		}
		if got := Status5xx(tc.status); got != tc.c5xx {
			t.Errorf("Status5xx(%d) = %v", tc.status, got)
		}
		if got := AuthFailureStatus(tc.status); got != tc.auth {
			t.Errorf("AuthFailureStatus(%d) = %v", tc.status, got)
		}
	}
}

var authMessages = []struct {
	msg  string
	want bool
}{
	{"sshd[4121]: Failed password for root from 203.0.113.50 port 52144 ssh2", true},
	{"sshd[4121]: Failed password for invalid user admin from 203.0.113.50 port 52144 ssh2", true},
	{"sshd[1]: Failed publickey for git from 198.51.100.7 port 4 ssh2: RSA SHA256:abc", true},
	{"sshd[1]: Failed keyboard-interactive/pam for root from 198.51.100.7 port 4 ssh2", true},
	{"sshd[1]: Failed none for invalid user x from 198.51.100.7 port 4 ssh2", true},
	{"sshd[1]: Invalid user oracle from 198.51.100.7 port 4", true},
	{"sshd[1]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=198.51.100.7  user=root", true},
	{"sshd[1]: PAM 2 more authentication failures; logname= uid=0 euid=0 tty=ssh ruser= rhost=198.51.100.7", true},
	{"sshd[1]: Connection closed by authenticating user root 198.51.100.7 port 4 [preauth]", true},
	{"sshd[1]: Connection closed by invalid user admin 198.51.100.7 port 4 [preauth]", true},
	{"sshd[1]: Disconnected from invalid user admin 198.51.100.7 port 4 [preauth]", true},
	{"sshd[1]: error: maximum authentication attempts exceeded for root from 198.51.100.7 port 4 ssh2 [preauth]", true},
	{"sshd[1]: Disconnecting authenticating user root 198.51.100.7 port 4: Too many authentication failures [preauth]", true},
	{"Failed password for", true},        // the phrase alone, at both ends of the message
	{"xInvalid user", true},              // substring, not word, match: cheap and what sshd needs
	{"Failed Failed password for", true}, // the first anchor hit does not complete a phrase
	{"sshd[1]: Accepted password for git from 198.51.100.7 port 4 ssh2", false},
	{"sshd[1]: Accepted publickey for git from 198.51.100.7 port 4 ssh2", false},
	{"sshd[1]: Connection closed by 198.51.100.7 port 4 [preauth]", false},
	{"sshd[1]: Received disconnect from 198.51.100.7 port 4:11: Bye Bye [preauth]", false},
	{"sshd[1]: pam_unix(sshd:session): session opened for user git by (uid=0)", false},
	{"sshd[1]: authenticated user root from 198.51.100.7", false},
	{"sshd[1]: failed password for root from 198.51.100.7", false}, // sshd capitalises; not guessed
	{"sshd[1]: Failed password fo", false},
	{"sshd[1]: Failed", false},
	{"kernel: IN=eth0 OUT= SRC=203.0.113.9 DST=10.0.0.1 LEN=60 PROTO=TCP SPT=443 DPT=22", false},
	{"nvalid user", false},
	{"", false},
}

func TestAuthFailureMessage(t *testing.T) {
	for _, tc := range authMessages {
		if got := AuthFailureMessage([]byte(tc.msg)); got != tc.want {
			t.Errorf("AuthFailureMessage(%q) = %v, want %v", tc.msg, got, tc.want)
		}
		if got := containsPhrase([]byte(tc.msg)); got != tc.want {
			t.Errorf("table disagrees with the phrase list on %q", tc.msg)
		}
	}
	for _, p := range authPhrases {
		for _, s := range []string{p, "x " + p + " y", p[:len(p)-1]} {
			if got, want := AuthFailureMessage([]byte(s)), containsPhrase([]byte(s)); got != want {
				t.Errorf("AuthFailureMessage(%q) = %v, want %v", s, got, want)
			}
		}
	}
}

// containsPhrase is the obvious definition that AuthFailureMessage speeds up.
func containsPhrase(msg []byte) bool {
	for _, p := range authPhrases {
		if bytes.Contains(msg, []byte(p)) {
			return true
		}
	}
	return false
}

func FuzzAuthFailureMessage(f *testing.F) {
	for _, tc := range authMessages {
		f.Add([]byte(tc.msg))
	}
	f.Add([]byte(strings.Repeat("Failed ", 100) + "password for"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		if got, want := AuthFailureMessage(msg), containsPhrase(msg); got != want {
			t.Fatalf("AuthFailureMessage(%q) = %v, want %v", msg, got, want)
		}
	})
}

func TestAuthFailureParsed(t *testing.T) {
	p := New(Options{})
	for _, tc := range []struct {
		f    Format
		line string
		want bool
	}{
		{Syslog, `<38>Nov 24 10:00:00 bastion sshd[4121]: Failed password for invalid user admin from 203.0.113.50 port 52144 ssh2`, true},
		{Auto, `<38>Nov 24 10:00:00 bastion sshd[4121]: Accepted password for git from 203.0.113.50 port 52144 ssh2`, false},
		{Auto, `<34>1 2026-11-24T10:00:00Z host sshd 1 - - Invalid user x from 198.51.100.4 port 4`, true},
		// The structured data is not the message.
		{Syslog, `<34>1 2026-11-24T10:00:00Z host app 1 - [x@1 note="Invalid user"] connect from 198.51.100.4`, false},
		// Nor is the hostname of an RFC 3164 header.
		{Syslog, `<38>Nov 24 10:00:00 authentication-failure-host app: connect from 198.51.100.4`, false},
		{Auto, `Nov 24 10:00:00 host sshd[1]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=198.51.100.7`, true},
		{Auto, `192.0.2.1 - - [24/Nov/2026:10:00:00 +0000] "GET /admin HTTP/1.1" 401 0`, true},
		{CLF, `192.0.2.1 - - [24/Nov/2026:10:00:00 +0000] "CONNECT x:443 HTTP/1.1" 407 0`, true},
		{CLF, `192.0.2.1 - - [24/Nov/2026:10:00:00 +0000] "GET /admin HTTP/1.1" 403 0`, false},
		{JSON, `{"ip":"192.0.2.1","status":401}`, true},
		{JSON, `{"ip":"192.0.2.1","status":"407"}`, true},
		{JSON, `{"ip":"192.0.2.1","status":200}`, false},
		// Classes come from fields, not from free text in other formats.
		{Fallback, `sshd: Failed password for root from 192.0.2.1`, false},
		{CLF, `192.0.2.1 - - [24/Nov/2026:10:00:00 +0000] "GET /Failed%20password%20for HTTP/1.1" 200 0`, false},
	} {
		var rec Record
		rec.AuthFailure = !tc.want // must be reset
		if err := p.Parse([]byte(tc.line), tc.f, recv, &rec); err != nil {
			t.Fatalf("%q: %v", tc.line, err)
		}
		if rec.AuthFailure != tc.want {
			t.Errorf("%v %q: AuthFailure = %v, want %v", tc.f, tc.line, rec.AuthFailure, tc.want)
		}
	}
}

var benchMessages = [][]byte{
	[]byte("sshd[4121]: Failed password for invalid user admin from 203.0.113.50 port 52144 ssh2"),
	[]byte("kernel: [12345.678] IN=eth0 OUT= MAC=00:16:3e:5e:6c:00:00:16:3e:1a:2b:3c:08:00 SRC=203.0.113.9 DST=10.0.0.1 LEN=60 TOS=0x00 PREC=0x00 TTL=50 ID=0 DF PROTO=TCP SPT=443 DPT=22"),
	[]byte("postfix/smtpd[123]: connect from unknown[203.0.113.66]"),
	[]byte("sshd[1]: Connection closed by authenticating user root 198.51.100.7 port 4 [preauth]"),
}

func BenchmarkAuthFailureMessage(b *testing.B) {
	for i := 0; i < b.N; i++ {
		AuthFailureMessage(benchMessages[i%len(benchMessages)])
	}
}

// BenchmarkAuthFailureContains is the plain phrase loop, for comparison.
func BenchmarkAuthFailureContains(b *testing.B) {
	for i := 0; i < b.N; i++ {
		containsPhrase(benchMessages[i%len(benchMessages)])
	}
}
