package nasty

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"hash/crc32"
	"io"
	"strings"
	"sync/atomic"
	"testing"
)

// repeatReader yields pattern repeated up to n bytes without holding more
// than one pattern; read counts what the consumer took.
type repeatReader struct {
	pattern []byte
	n       int64
	off     int64
	read    atomic.Int64
}

func repeatN(pattern string, n int64) *repeatReader {
	return &repeatReader{pattern: []byte(pattern), n: n}
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.off >= r.n {
		return 0, io.EOF
	}
	if rest := r.n - r.off; int64(len(p)) > rest {
		p = p[:rest]
	}
	k := len(r.pattern)
	done := 0
	for done < len(p) {
		i := int((r.off + int64(done)) % int64(k))
		done += copy(p[done:], r.pattern[i:])
	}
	r.off += int64(done)
	r.read.Add(int64(done))
	return done, nil
}

// gzipBomb is a valid single-member gzip stream, produced on the fly, that
// decompresses to at least n bytes of pattern repeated (1 to 258 bytes).
// The deflate data is one block with the fixed Huffman code: the pattern as
// literals, then copies of 258 bytes at distance len(pattern), 13 bits each
// for patterns of up to 4 bytes (a few more for longer ones), so 1 GiB
// costs about 6.5 MB on the wire and almost no CPU to generate. The
// trailer's CRC is computed only if a reader gets that far.
type gzipBomb struct {
	pattern  []byte
	copyBits uint64 // one copy: length code, distance code and extra bits
	copyLen  uint
	copies   int64 // copies of 258 bytes after the literals
	total    int64 // decompressed size
	done     int64 // copies written
	stage    int   // 0 header, 1 copies, 2 end, 3 EOF
	out      []byte
	bits     uint64
	nbits    uint
	read     atomic.Int64
}

func newGzipBomb(pattern string, n int64) *gzipBomb {
	if len(pattern) < 1 || len(pattern) > 258 {
		panic("pattern must have 1 to 258 bytes")
	}
	b := &gzipBomb{pattern: []byte(pattern)}
	rest := max(n-int64(len(pattern)), 0)
	b.copies = (rest + 257) / 258
	b.total = int64(len(pattern)) + 258*b.copies
	// Distance codes (RFC 1951 3.2.5): code c covers base(c) and the
	// 2^extra(c) - 1 distances after it, extra(c) = max(0, c/2-1).
	dist := len(pattern)
	code, base, extra := 0, 1, 0
	for c := 0; ; c++ {
		e := max(0, c/2-1)
		if dist < base+1<<e {
			code, extra = c, e
			break
		}
		base += 1 << e
	}
	// Length code 285 (258 bytes): 8 bits 11000101; no extra bits.
	b.copyBits, b.copyLen = reverse(0xc5, 8), 8
	b.copyBits |= reverse(uint64(code), 5) << b.copyLen
	b.copyLen += 5
	b.copyBits |= uint64(dist-base) << b.copyLen
	b.copyLen += uint(extra)
	return b
}

// reverse returns the n low bits of code in reverse order: Huffman codes
// are sent most significant bit first into deflate's LSB-first stream.
func reverse(code uint64, n uint) uint64 {
	var rev uint64
	for i := uint(0); i < n; i++ {
		rev = rev<<1 | (code>>i)&1
	}
	return rev
}

// putBits appends v's low n bits, least significant first (deflate's
// order for headers and extra bits).
func (b *gzipBomb) putBits(v uint64, n uint) {
	b.bits |= v << b.nbits
	b.nbits += n
	for b.nbits >= 8 {
		b.out = append(b.out, byte(b.bits))
		b.bits >>= 8
		b.nbits -= 8
	}
}

// putCode appends a Huffman code of n bits, most significant bit first.
func (b *gzipBomb) putCode(code uint64, n uint) { b.putBits(reverse(code, n), n) }

func (b *gzipBomb) putLiteral(c byte) {
	if c < 144 {
		b.putCode(0x30+uint64(c), 8)
	} else {
		b.putCode(0x190+uint64(c-144), 9)
	}
}

func (b *gzipBomb) fill() {
	switch b.stage {
	case 0:
		// ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL=0 OS=unknown.
		b.out = append(b.out, 0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255)
		b.putBits(1, 1) // BFINAL
		b.putBits(1, 2) // BTYPE fixed Huffman
		for _, c := range b.pattern {
			b.putLiteral(c)
		}
		b.stage = 1
	case 1:
		for i := 0; i < 4096 && b.done < b.copies; i++ {
			b.putBits(b.copyBits, b.copyLen)
			b.done++
		}
		if b.done == b.copies {
			b.stage = 2
		}
	case 2:
		b.putCode(0, 7) // end of block
		if b.nbits > 0 {
			b.putBits(0, 8-b.nbits)
		}
		b.out = binary.LittleEndian.AppendUint32(b.out, b.crc())
		b.out = binary.LittleEndian.AppendUint32(b.out, uint32(b.total))
		b.stage = 3
	}
}

// crc is the CRC-32 of the decompressed data.
func (b *gzipBomb) crc() uint32 {
	chunk := bytes.Repeat(b.pattern, (1<<20)/len(b.pattern))
	var c uint32
	left := b.total
	for left > 0 {
		k := min(left, int64(len(chunk)))
		c = crc32.Update(c, crc32.IEEETable, chunk[:k])
		left -= k
	}
	return c
}

func (b *gzipBomb) Read(p []byte) (int, error) {
	for len(b.out) == 0 {
		if b.stage == 3 {
			return 0, io.EOF
		}
		b.fill()
	}
	n := copy(p, b.out)
	b.out = b.out[n:]
	if len(b.out) == 0 {
		b.out = b.out[:0:0]
	}
	b.read.Add(int64(n))
	return n, nil
}

// TestGeneratorsAreValid checks the generators against compress/gzip at a
// small size (the suite sends them at 1 GiB, where decoding in the test
// would cost more than the test itself).
func TestGeneratorsAreValid(t *testing.T) {
	pats := []string{"\x00", "\n", "x\n", "ab\r\n", "\xff\x90", "abcd\n", "0123456789abcde\n", strings.Repeat("L", 199) + "\n", strings.Repeat("\xfe", 258)}
	for _, pat := range pats {
		for _, n := range []int64{1, 259, 100000, 1 << 20} {
			bomb := newGzipBomb(pat, n)
			zr, err := gzip.NewReader(bomb)
			if err != nil {
				t.Fatalf("%q %d: %v", pat, n, err)
			}
			zr.Multistream(false)
			got, err := io.ReadAll(zr)
			if err != nil {
				t.Fatalf("%q %d: decompress: %v", pat, n, err)
			}
			if int64(len(got)) != bomb.total || bomb.total < n {
				t.Fatalf("%q %d: decompressed %d bytes, generator says %d", pat, n, len(got), bomb.total)
			}
			want := bytes.Repeat([]byte(pat), len(got)/len(pat)+1)[:len(got)]
			if !bytes.Equal(got, want) {
				t.Fatalf("%q %d: wrong content", pat, n)
			}
			if rest, _ := io.ReadAll(bomb); len(rest) != 0 {
				t.Fatalf("%q %d: %d bytes after the member", pat, n, len(rest))
			}
		}
	}
	r := repeatN("abc", 10)
	if got, _ := io.ReadAll(r); string(got) != "abcabcabca" || r.read.Load() != 10 {
		t.Fatalf("repeatN: %q", got)
	}
	// Size of the 1 GiB bomb on the wire.
	b := newGzipBomb("\n", gib)
	n, err := io.Copy(io.Discard, io.LimitReader(b, 64<<20))
	if err != nil || n > 8<<20 {
		t.Fatalf("1 GiB bomb is %d bytes compressed (%v)", n, err)
	}
	t.Logf("1 GiB bomb: %s compressed", size(n))
}
