package ingest

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	logtallyv1 "github.com/logtally/logtally/gen/logtally/v1"
)

// The HTTP ingest body oracle. A body is sent as plain bytes or gzip
// (single, concatenated, truncated, corrupted members, bombs over the cap).
// An independent reference decodes it with compress/gzip on its own and
// predicts the answer: 415 for an unknown encoding, 413 when the body is
// over the cap (compressed or decompressed), 400 when it does not decode,
// else 200 and batches holding exactly the lines of the decompressed body
// under newline framing (empty lines as empty entries, lines over the limit
// as oversized entries with their first KiB and length), in body order.

const (
	bodyMaxLine  = 64
	bodyMaxBatch = 4096 // the smallest batch the configuration allows
	bodyMaxBytes = 16 << 10
)

// A peer, source and format as long as they get: the batch header must
// still fit into batchOverhead.
var (
	bodyPeer   = "[2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]:65535"
	bodySource = strings.Repeat("s", 64)
	bodyFormat = strings.Repeat("f", 64)
)

// bodyCase is one request body on the wire.
type bodyCase struct {
	name string
	enc  string // Content-Encoding
	wire []byte
}

// wantEntry is one line of the decompressed body as the raw stream must
// hold it.
type wantEntry struct {
	oversized bool
	line      []byte // the line, or the prefix of an oversized one
	length    uint64
}

// bodyOracle predicts the status of c and, for 200, the entries.
func bodyOracle(c bodyCase, maxBody int64, maxLine int) (int, []wantEntry) {
	var decoded []byte
	switch strings.ToLower(strings.TrimSpace(c.enc)) {
	case "", "identity":
		if int64(len(c.wire)) > maxBody {
			return http.StatusRequestEntityTooLarge, nil
		}
		decoded = c.wire
	case "gzip", "x-gzip":
		if int64(len(c.wire)) > maxBody {
			return 0, nil // 400 or 413: depends on where decoding fails
		}
		zr, err := gzip.NewReader(bytes.NewReader(c.wire))
		if err != nil {
			return http.StatusBadRequest, nil
		}
		// Multistream, like the server. The limit only keeps a corrupted
		// stream from expanding without end.
		out, err := io.ReadAll(io.LimitReader(zr, 4*maxBody))
		switch {
		case int64(len(out)) > maxBody:
			return http.StatusRequestEntityTooLarge, nil
		case err != nil:
			return http.StatusBadRequest, nil
		}
		decoded = out
	default:
		return http.StatusUnsupportedMediaType, nil
	}
	var want []wantEntry
	segs := bytes.Split(decoded, []byte("\n"))
	if len(segs[len(segs)-1]) == 0 {
		segs = segs[:len(segs)-1] // the final newline ends the last line
	}
	for _, s := range segs {
		s = bytes.TrimSuffix(s, []byte("\r"))
		if len(s) > maxLine {
			want = append(want, wantEntry{oversized: true, line: s[:min(len(s), oversizedPrefix)], length: uint64(len(s))})
		} else {
			want = append(want, wantEntry{line: s, length: uint64(len(s))})
		}
	}
	return http.StatusOK, want
}

// checkStored compares the raw batches of one accepted request with want:
// the lines in order, the oversized entries in order, and the batch
// header. Lines and oversized entries travel in separate fields of a
// batch, so only their order within each kind is kept.
func checkStored(t *testing.T, name string, batches []*logtallyv1.RawBatch, want []wantEntry, received time.Time) {
	t.Helper()
	var lines, over [][]byte
	var overLen []uint64
	for i, b := range batches {
		if len(b.Lines)+len(b.Oversized) == 0 {
			t.Fatalf("%s: batch %d is empty", name, i)
		}
		if b.Source != bodySource || b.Format != bodyFormat || b.Peer != bodyPeer || b.ReceivedUnixMs != received.UnixMilli() {
			t.Fatalf("%s: batch %d header source %q format %q peer %q received %d", name, i, b.Source, b.Format, b.Peer, b.ReceivedUnixMs)
		}
		lines = append(lines, b.Lines...)
		for _, o := range b.Oversized {
			over = append(over, o.Prefix)
			overLen = append(overLen, o.Length)
		}
	}
	var wantLines, wantOver [][]byte
	var wantOverLen []uint64
	for _, w := range want {
		if w.oversized {
			wantOver = append(wantOver, w.line)
			wantOverLen = append(wantOverLen, w.length)
		} else {
			wantLines = append(wantLines, w.line)
		}
	}
	if fmt.Sprintf("%q", lines) != fmt.Sprintf("%q", wantLines) {
		t.Fatalf("%s: stored lines\n %q\nwant\n %q", name, lines, wantLines)
	}
	if fmt.Sprintf("%q %v", over, overLen) != fmt.Sprintf("%q %v", wantOver, wantOverLen) {
		t.Fatalf("%s: stored oversized %q %v, want %q %v", name, over, overLen, wantOver, wantOverLen)
	}
}

// readCase runs c through readBody as handleIngest does (a MaxBytesReader
// on the wire, then decoding, the cap and framing) and returns the status
// and the batches as JetStream would store them.
func readCase(t *testing.T, c bodyCase, received time.Time) (int, string, *httpBatches, []*logtallyv1.RawBatch) {
	t.Helper()
	hb := &httpBatches{maxBytes: bodyMaxBatch, pool: newBuffers(bodyMaxBatch+batchOverhead, 4), peer: bodyPeer, source: bodySource, format: bodyFormat, first: received}
	body := http.MaxBytesReader(nil, io.NopCloser(bytes.NewReader(c.wire)), bodyMaxBytes)
	code, msg := readBody(body, c.enc, bodyMaxBytes, bodyMaxLine, hb)
	if code != 0 {
		return code, msg, hb, nil
	}
	out := make([]*logtallyv1.RawBatch, len(hb.batches))
	for i, eb := range hb.batches {
		if len(eb.data) > bodyMaxBatch {
			t.Fatalf("%s: batch %d is %d bytes encoded, over the %d byte limit", c.name, i, len(eb.data), bodyMaxBatch)
		}
		var b logtallyv1.RawBatch
		if err := proto.Unmarshal(eb.data, &b); err != nil {
			t.Fatalf("%s: batch %d does not decode: %v", c.name, i, err)
		}
		if eb.entries != len(b.Lines)+len(b.Oversized) {
			t.Fatalf("%s: batch %d says %d entries, holds %d", c.name, i, eb.entries, len(b.Lines)+len(b.Oversized))
		}
		out[i] = &b
	}
	return http.StatusOK, "", hb, out
}

func gzipBytes(level int, parts ...[]byte) []byte {
	var buf bytes.Buffer
	for _, p := range parts {
		zw, err := gzip.NewWriterLevel(&buf, level)
		if err != nil {
			panic(err)
		}
		_, _ = zw.Write(p)
		_ = zw.Close()
	}
	return buf.Bytes()
}

// makeCase builds the wire form of body for one of the fuzzer's modes.
func makeCase(body []byte, mode uint8, cut, rep uint16) bodyCase {
	level := []int{gzip.DefaultCompression, gzip.NoCompression, gzip.BestSpeed, gzip.BestCompression, gzip.HuffmanOnly}[int(rep)%5]
	gzEnc := []string{"gzip", "x-gzip", " GZip "}[int(cut)%3]
	switch mode % 8 {
	case 0:
		return bodyCase{"plain", []string{"", "identity", "Identity"}[int(cut)%3], body}
	case 1:
		return bodyCase{"gzip", gzEnc, gzipBytes(level, body)}
	case 2: // concatenated members, split anywhere (also inside a line)
		k := int(cut) % (len(body) + 1)
		j := k + int(rep)%(len(body)-k+1)
		return bodyCase{"gzip-members", gzEnc, gzipBytes(level, body[:k], body[k:j], body[j:])}
	case 3:
		w := gzipBytes(level, body)
		return bodyCase{"gzip-truncated", gzEnc, w[:int(cut)%len(w)]}
	case 4:
		w := gzipBytes(level, body)
		w[int(cut)%len(w)] ^= byte(rep) | 1
		return bodyCase{"gzip-corrupt", gzEnc, w}
	case 5: // a bomb: the body repeated, bounded by the cap or over it
		n := 1 + int(rep)%2048
		if len(body) > 0 {
			n = min(n, (64*bodyMaxBytes)/len(body)+1)
		}
		return bodyCase{"gzip-bomb", gzEnc, gzipBytes(gzip.BestCompression, bytes.Repeat(body, n))}
	case 6: // a valid member and then something that is not one
		w := gzipBytes(level, body)
		return bodyCase{"gzip-trailing-garbage", gzEnc, append(w, body[:int(cut)%(len(body)+1)]...)}
	default:
		return bodyCase{"unknown-encoding", []string{"br", "deflate", "gzip, br", "zstd"}[int(cut)%4], body}
	}
}

var bodySeeds = []string{
	"a\nb\n",
	"a\n\nb",
	"a\r\n\r\n",
	"\n",
	"",
	"\r",
	"x\x00y\n\xff\xfe\n",
	strings.Repeat("z", 200) + "\nok\n",
	strings.Repeat("y", 65) + "\r\n" + strings.Repeat("w", 64) + "\r\n",
	strings.Repeat("\n", 300),
	"198.51.100.7 - - [24/Nov/2026:10:00:00 +0000] \"GET / HTTP/1.1\" 200 1\rforged 203.0.113.9\n",
	strings.Repeat("0123456789abcdef\n", 40),
}

func FuzzHTTPIngestBody(f *testing.F) {
	for i, s := range bodySeeds {
		for mode := range uint8(8) {
			f.Add([]byte(s), mode, uint16(i*7+int(mode)), uint16(i+3))
		}
	}
	received := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body []byte, mode uint8, cut, rep uint16) {
		c := makeCase(body, mode, cut, rep)
		want, entries := bodyOracle(c, bodyMaxBytes, bodyMaxLine)
		code, msg, hb, batches := readCase(t, c, received)
		switch {
		case want == 0 && (code == http.StatusBadRequest || code == http.StatusRequestEntityTooLarge):
		case code != want:
			t.Fatalf("%s (%q, %d bytes on the wire): status %d %q, want %d", c.name, c.enc, len(c.wire), code, msg, want)
		}
		if code != http.StatusOK {
			if msg == "" {
				t.Fatalf("%s: status %d without a message", c.name, code)
			}
			return
		}
		checkStored(t, c.name, batches, entries, received)
		var lines, over, blank int
		var size int64
		for _, e := range entries {
			switch {
			case e.oversized:
				over++
			case len(e.line) == 0:
				lines++
				blank++
			default:
				lines++
			}
			size += int64(e.length)
		}
		if hb.lines != lines || hb.over != over || hb.blank != blank || hb.bytes != size {
			t.Fatalf("%s: counted %d lines, %d oversized, %d empty, %d bytes; want %d, %d, %d, %d", c.name, hb.lines, hb.over, hb.blank, hb.bytes, lines, over, blank, size)
		}
		// The cut into batches is a function of the body (Idempotency-Key).
		_, _, hb2, _ := readCase(t, c, received)
		if len(hb2.batches) != len(hb.batches) {
			t.Fatalf("%s: %d batches, then %d for the same body", c.name, len(hb.batches), len(hb2.batches))
		}
		for i := range hb.batches {
			if hb.batches[i].entries != hb2.batches[i].entries {
				t.Fatalf("%s: batch %d has %d entries, then %d for the same body", c.name, i, hb.batches[i].entries, hb2.batches[i].entries)
			}
		}
	})
}

// TestHTTPIngestBodyEndToEnd sends bodies of every mode of the fuzz target
// through the real handler and JetStream and checks the raw stream against
// the same oracle: a 4xx stores nothing, a 200 stores exactly the lines.
func TestHTTPIngestBodyEndToEnd(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.MaxLineBytes = bodyMaxLine
		c.BatchMaxBytes = bodyMaxBatch
		c.HTTPMaxBodyBytes = bodyMaxBytes
	})
	ts := httptest.NewServer(e.mux)
	defer ts.Close()
	big := strings.Repeat("0123456789abcdef\n", 900) // 15.3 KiB: several batches, under the cap
	seeds := append(append([]string(nil), bodySeeds...), big, big+big)
	n := 0
	statuses := map[int]int{}
	defer func() {
		for _, c := range []int{http.StatusOK, http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType} {
			if statuses[c] == 0 {
				t.Errorf("no case answered %d: %v", c, statuses)
			}
		}
	}()
	for i, s := range seeds {
		for mode := range uint8(8) {
			for _, v := range []uint16{0, 1, 5, 77, 1000} {
				c := makeCase([]byte(s), mode, uint16(i)+v, v+uint16(mode))
				want, entries := bodyOracle(c, bodyMaxBytes, bodyMaxLine)
				n++
				source := fmt.Sprintf("case%d", n)
				req, err := http.NewRequest(http.MethodPost, ts.URL+"/api/v1/ingest?source="+source, bytes.NewReader(c.wire))
				if err != nil {
					t.Fatal(err)
				}
				if c.enc != "" {
					req.Header.Set("Content-Encoding", c.enc)
				}
				// With a key, batch i is http-<key>-<i>: the body's order.
				req.Header.Set(IdempotencyKeyHeader, source)
				before := len(e.fetch(t))
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				code := resp.StatusCode
				statuses[code]++
				if !(code == want || want == 0 && (code == http.StatusBadRequest || code == http.StatusRequestEntityTooLarge)) {
					t.Fatalf("%s (%q, %d bytes): %d %s, want %d", c.name, c.enc, len(c.wire), code, raw, want)
				}
				msgs := e.fetch(t)
				if code != http.StatusOK {
					if !bytes.Contains(raw, []byte(`"error"`)) {
						t.Fatalf("%s: %d without an error message: %s", c.name, code, raw)
					}
					if len(msgs) != before {
						t.Fatalf("%s: answered %d but stored %d messages", c.name, code, len(msgs)-before)
					}
					continue
				}
				var batches []*logtallyv1.RawBatch
				var received int64
				for _, m := range msgs[before:] {
					if m.batch.Source != source {
						t.Fatalf("%s: stored a batch of source %q", c.name, m.batch.Source)
					}
					if received == 0 {
						received = m.batch.ReceivedUnixMs
					}
					// checkStored compares the header with the fuzz target's.
					b := proto.Clone(m.batch).(*logtallyv1.RawBatch)
					b.Source, b.Format, b.Peer = bodySource, bodyFormat, bodyPeer
					batches = append(batches, b)
				}
				// Batches of one request are published concurrently:
				// restore the body's order from the Nats-Msg-Id.
				sortBatches(t, batches, msgs[before:])
				checkStored(t, c.name, batches, entries, time.UnixMilli(received))
			}
		}
	}
}

// sortBatches orders batches by the index i of their Nats-Msg-Id
// http-<key>-<i>.
func sortBatches(t *testing.T, batches []*logtallyv1.RawBatch, msgs []rawMsg) {
	t.Helper()
	sorted := make([]*logtallyv1.RawBatch, len(batches))
	for k, m := range msgs {
		var i int
		if _, err := fmt.Sscanf(m.msgID[strings.LastIndexByte(m.msgID, '-')+1:], "%d", &i); err != nil || i < 0 || i >= len(batches) || sorted[i] != nil {
			t.Fatalf("Nats-Msg-Id %q of %d batches", m.msgID, len(batches))
		}
		sorted[i] = batches[k]
	}
	copy(batches, sorted)
}
