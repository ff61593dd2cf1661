// Package loggen generates realistic log lines with Zipf-distributed client
// IPs and remembers what each line means, so tests and benchmarks can compare
// the pipeline's answers with an independent count of the same input.
package loggen

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/logtally/logtally/internal/counts"
)

// Line is one generated line and its meaning.
type Line struct {
	Text []byte
	Addr netip.Addr
	Time time.Time // event time, UTC, whole seconds
	// Counters is what the line adds to its IP's window, decided here from
	// what was generated (not by the parser): one request, 4xx/5xx by the
	// HTTP status, an authentication failure for HTTP 401 and sshd's
	// "Failed password", the response size in bytes.
	Counters counts.Counters
}

func httpCounters(status, size int) counts.Counters {
	c := counts.Counters{Requests: 1, Bytes: uint64(size)}
	switch {
	case status >= 400 && status < 500:
		c.Status4xx = 1
	case status >= 500 && status < 600:
		c.Status5xx = 1
	}
	if status == 401 {
		c.AuthFailures = 1
	}
	return c
}

// Generator produces lines whose event times spread evenly over
// [Base, Base+Span) with a little disorder, as real logs have.
type Generator struct {
	rng  *rand.Rand
	zipf *rand.Zipf
	ips  []netip.Addr
	Base time.Time
	Span time.Duration
}

// New returns a generator over pool distinct client IPs (a tenth IPv6).
func New(seed uint64, pool int, base time.Time, span time.Duration) *Generator {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	ips := make([]netip.Addr, pool)
	seen := map[netip.Addr]bool{}
	for i := range ips {
		for {
			var a netip.Addr
			if i%10 == 9 {
				a = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 4: byte(rng.IntN(256)), 5: byte(rng.IntN(256)), 14: byte(rng.IntN(256)), 15: byte(rng.IntN(256))})
			} else {
				a = netip.AddrFrom4([4]byte{byte(1 + rng.IntN(222)), byte(rng.IntN(256)), byte(rng.IntN(256)), byte(1 + rng.IntN(254))})
			}
			if !seen[a] {
				seen[a] = true
				ips[i] = a
				break
			}
		}
	}
	return &Generator{rng: rng, zipf: rand.NewZipf(rng, 1.07, 2, uint64(pool-1)), ips: ips, Base: base.UTC(), Span: span}
}

func (g *Generator) pick(i, n int) (netip.Addr, time.Time) {
	a := g.ips[g.zipf.Uint64()]
	off := time.Duration(float64(g.Span) * float64(i) / float64(n))
	off += time.Duration(g.rng.IntN(40)-20) * time.Second
	if off < 0 {
		off = 0
	}
	if off >= g.Span {
		off = g.Span - time.Second
	}
	return a, g.Base.Add(off).Truncate(time.Second)
}

var (
	methods = []string{"GET", "GET", "GET", "POST", "HEAD", "PUT"}
	paths   = []string{"/", "/index.html", "/api/v1/items?id=42", "/static/app.js", "/login", "/wp-login.php"}
	agents  = []string{
		"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
		"curl/8.5.0",
		`Mozilla/5.0 (compatible; \"quoted\" bot/2.1)`,
		"Go-http-client/1.1",
	}
	zones = []string{"+0000", "+0530", "-0700", "+0100"}
)

// Combined is line i of n in nginx/Apache combined format, in one of several
// UTC offsets.
func (g *Generator) Combined(i, n int) Line {
	a, t := g.pick(i, n)
	zone := zones[g.rng.IntN(len(zones))]
	loc := fixedZone(zone)
	host := a.String()
	if a.Is6() && g.rng.IntN(2) == 0 {
		host = "[" + host + "]"
	}
	bytes := g.rng.IntN(50000)
	size := fmt.Sprint(bytes)
	if g.rng.IntN(20) == 0 {
		size, bytes = "-", 0
	}
	status := []int{200, 200, 304, 404, 500, 401, 200, 503}[g.rng.IntN(8)]
	text := fmt.Sprintf(`%s - - [%s] "%s %s HTTP/1.1" %d %s "-" "%s"`,
		host, t.In(loc).Format("02/Jan/2006:15:04:05 -0700"),
		methods[g.rng.IntN(len(methods))], paths[g.rng.IntN(len(paths))],
		status, size, agents[g.rng.IntN(len(agents))])
	return Line{Text: []byte(text), Addr: a, Time: t, Counters: httpCounters(status, bytes)}
}

// SSHD3164 is an RFC 3164 syslog line from sshd (no year, UTC).
func (g *Generator) SSHD3164(i, n int) Line {
	a, t := g.pick(i, n)
	text := fmt.Sprintf("<38>%s web1 sshd[%d]: Failed password for root from %s port %d ssh2",
		t.Format(time.Stamp), 1000+g.rng.IntN(9000), a, 1024+g.rng.IntN(60000))
	return Line{Text: []byte(text), Addr: a, Time: t, Counters: counts.Counters{Requests: 1, AuthFailures: 1}}
}

// Firewall5424 is an RFC 5424 syslog line from iptables.
func (g *Generator) Firewall5424(i, n int) Line {
	a, t := g.pick(i, n)
	text := fmt.Sprintf("<4>1 %s fw1 kernel - - - IN=eth0 OUT= SRC=%s DST=192.0.2.1 LEN=60 PROTO=TCP SPT=%d DPT=22",
		t.In(fixedZone("+0100")).Format(time.RFC3339), a, 1024+g.rng.IntN(60000))
	return Line{Text: []byte(text), Addr: a, Time: t, Counters: counts.Counters{Requests: 1}}
}

// JSON is a JSON access-log line.
func (g *Generator) JSON(i, n int) Line {
	a, t := g.pick(i, n)
	size := g.rng.IntN(9000)
	text := fmt.Sprintf(`{"remote_addr":%q,"time":%q,"request":"GET /x HTTP/1.1","status":200,"body_bytes_sent":%d,"http_user_agent":"curl/8.5.0"}`,
		a.String(), t.Format(time.RFC3339), size)
	return Line{Text: []byte(text), Addr: a, Time: t, Counters: httpCounters(200, size)}
}

func fixedZone(z string) *time.Location {
	sign := 1
	if z[0] == '-' {
		sign = -1
	}
	h := int(z[1]-'0')*10 + int(z[2]-'0')
	m := int(z[3]-'0')*10 + int(z[4]-'0')
	return time.FixedZone(z, sign*(h*3600+m*60))
}

// Malformed returns lines that must all become dead letters.
func Malformed(base time.Time) [][]byte {
	ts := base.UTC().Format("02/Jan/2006:15:04:05 -0700")
	return [][]byte{
		{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03},
		[]byte("\xff\xfe invalid utf-8 from 203.0.113.9 \xc3\x28"),
		[]byte(`999.1.1.1 - - [` + ts + `] "GET / HTTP/1.1" 200 1 "-" "-"`),
		[]byte(`203.0.113.10 - - [31/Feb/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "-"`),
		[]byte(`203.0.113.11 - - [24/Nov/2026:25:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "-"`),
		[]byte("no address in this line at all"),
		{},
		[]byte(`{"remote_addr": "203.0.113.12", "time": `),
		[]byte("<38>Nov 24 10:00:00 web1 sshd[1]: session opened for user root"),
	}
}
