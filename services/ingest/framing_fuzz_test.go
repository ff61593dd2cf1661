package ingest

import (
	"bufio"
	"bytes"
	"fmt"
	"testing"
)

type framingLog struct{ got []string }

func (r *framingLog) line(p []byte) { r.got = append(r.got, "L"+string(p)) }
func (r *framingLog) oversized(prefix []byte, n uint64) {
	r.got = append(r.got, fmt.Sprintf("O%d", n))
}
func (r *framingLog) empty() { r.got = append(r.got, "E") }
func (r *framingLog) truncated(prefix []byte, declared, received uint64) {
	r.got = append(r.got, fmt.Sprintf("T%d/%d/%s", declared, received, prefix))
}

// expectLines is an independent oracle for newline framing.
func expectLines(in []byte, maxLine int) []string {
	var out []string
	segs := bytes.Split(in, []byte("\n"))
	if len(segs[len(segs)-1]) == 0 {
		segs = segs[:len(segs)-1] // the final newline ends the last line
	}
	for _, s := range segs {
		s = bytes.TrimSuffix(s, []byte("\r"))
		switch {
		case len(s) == 0:
			out = append(out, "E")
		case len(s) > maxLine:
			out = append(out, fmt.Sprintf("O%d", len(s)))
		default:
			out = append(out, "L"+string(s))
		}
	}
	return out
}

func FuzzScanLines(f *testing.F) {
	for _, s := range []string{"a\nb\n", "a\n\nb", "a\r\n\r\n", "\n", "", "x\x00y\n\xff\xfe\n", string(bytes.Repeat([]byte("z"), 200)) + "\nok\n"} {
		f.Add([]byte(s))
	}
	const maxLine = 64
	f.Fuzz(func(t *testing.T, in []byte) {
		var r framingLog
		if err := scanLines(bufio.NewReaderSize(bytes.NewReader(in), readerSize(maxLine)), maxLine, &r, nil); err != nil {
			t.Fatal(err)
		}
		want := expectLines(in, maxLine)
		if fmt.Sprint(r.got) != fmt.Sprint(want) {
			t.Fatalf("framing of %q:\n got %q\nwant %q", in, r.got, want)
		}
	})
}

func FuzzScanSyslog(f *testing.F) {
	for _, s := range []string{"5 hello3 abc", "<34>1 msg\n<34>2 msg\n", "12 <34>a\nb c d", "99999999999999999999 x", "0 ", "7 abc"} {
		f.Add([]byte(s))
	}
	const maxLine = 64
	f.Fuzz(func(t *testing.T, in []byte) {
		var r framingLog
		_ = scanSyslog(bufio.NewReaderSize(bytes.NewReader(in), readerSize(maxLine)), maxLine, &r, nil, func(string) {})
		total := 0
		for i, g := range r.got {
			switch g[0] {
			case 'L':
				if len(g)-1 > maxLine {
					t.Fatalf("line over the limit: %d bytes", len(g)-1)
				}
				total += len(g) - 1
			case 'T':
				// Only the end of the input cuts a frame short.
				if i != len(r.got)-1 {
					t.Fatalf("truncated frame %q before the end: %q", g, r.got)
				}
				var declared, received int
				if _, err := fmt.Sscanf(g, "T%d/%d/", &declared, &received); err != nil || received > declared || received > maxLine {
					t.Fatalf("truncated frame %q", g)
				}
				total += received
			}
		}
		if total > len(in) {
			t.Fatalf("emitted %d bytes from %d", total, len(in))
		}
	})
}
