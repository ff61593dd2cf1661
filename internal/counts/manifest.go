package counts

import (
	"fmt"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"

	logtallyv1 "github.com/logtally/logtally/gen/logtally/v1"
)

// Format is the current window value format (WindowState.format).
const Format = 2

// Manifest is a decoded window value: the small key <start>.<p> that says
// where the window's entries are. Format 1 values (one flat list, requests
// only) decode into a format 2 manifest whose entries are all inline.
type Manifest struct {
	Format      int // as read: 1 or 2
	LastSeq     uint64
	Generation  uint64
	Totals      Counters
	DeadLetters uint64
	Late        uint64
	Inline      []Entry // sorted
	Runs        []Run
	// TopK is set on a dims window cut to its top values per field.
	TopK uint32
}

// Run describes one stored run: sorted entries in chunks.
type Run struct {
	Generation uint64
	Entries    uint64
	Bytes      uint64
	Slots      []uint32
	Firsts     [][AddrLen]byte // first address of each chunk
	HeadSlot   uint32          // 0: no head
	Written    time.Time
}

// ChunkFor returns the index of the chunk that would hold addr.
func (r *Run) ChunkFor(addr *[AddrLen]byte) int {
	lo, hi := 0, len(r.Firsts)
	for lo < hi {
		m := (lo + hi) / 2
		if CompareAddr(&r.Firsts[m], addr) <= 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return max(lo-1, 0)
}

// ChunkKey is the key of one chunk of window key: "<start>.<p>.<slot>".
func ChunkKey(windowKey string, slot uint32) string {
	return windowKey + "." + strconv.FormatUint(uint64(slot), 10)
}

// MarshalManifest encodes a manifest in the current format.
func MarshalManifest(m *Manifest) ([]byte, error) {
	st := &logtallyv1.WindowState{
		LastSeq:     m.LastSeq,
		DeadLetters: m.DeadLetters,
		Late:        m.Late,
		Format:      Format,
		Generation:  m.Generation,
		Totals:      countersPB(m.Totals),
		TopK:        m.TopK,
	}
	if len(m.Inline) > 0 {
		st.Inline = EncodeEntries(m.Inline)
	}
	for _, r := range m.Runs {
		pr := &logtallyv1.Run{
			Generation:    r.Generation,
			Entries:       r.Entries,
			Bytes:         r.Bytes,
			Slots:         r.Slots,
			Firsts:        make([]byte, 0, len(r.Firsts)*AddrLen),
			HeadSlot:      r.HeadSlot,
			WrittenUnixMs: r.Written.UnixMilli(),
		}
		for _, f := range r.Firsts {
			pr.Firsts = append(pr.Firsts, f[:]...)
		}
		st.Runs = append(st.Runs, pr)
	}
	return proto.Marshal(st)
}

// UnmarshalManifest decodes a window value of any format.
func UnmarshalManifest(b []byte) (*Manifest, error) {
	var st logtallyv1.WindowState
	if err := proto.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	m := &Manifest{
		LastSeq:     st.LastSeq,
		Generation:  st.Generation,
		DeadLetters: st.DeadLetters,
		Late:        st.Late,
	}
	switch st.Format {
	case 0:
		return m, upgradeV1(m, &st)
	case Format:
	default:
		return nil, fmt.Errorf("%w: format %d is newer than this release (%d)", ErrCorrupt, st.Format, Format)
	}
	m.Format = Format
	m.Totals = countersFromPB(st.Totals)
	m.TopK = st.TopK
	if len(st.Inline) > 0 {
		var err error
		if m.Inline, err = DecodeEntries(nil, st.Inline); err != nil {
			return nil, fmt.Errorf("inline entries: %w", err)
		}
	}
	for i, pr := range st.Runs {
		if len(pr.Firsts) != len(pr.Slots)*AddrLen || len(pr.Slots) == 0 {
			return nil, fmt.Errorf("%w: run %d has %d slots and %d bytes of first addresses", ErrCorrupt, i, len(pr.Slots), len(pr.Firsts))
		}
		r := Run{
			Generation: pr.Generation,
			Entries:    pr.Entries,
			Bytes:      pr.Bytes,
			Slots:      pr.Slots,
			Firsts:     make([][AddrLen]byte, len(pr.Slots)),
			HeadSlot:   pr.HeadSlot,
			Written:    time.UnixMilli(pr.WrittenUnixMs).UTC(),
		}
		for j := range r.Firsts {
			r.Firsts[j] = [AddrLen]byte(pr.Firsts[j*AddrLen:])
			if j > 0 && CompareAddr(&r.Firsts[j-1], &r.Firsts[j]) >= 0 {
				return nil, fmt.Errorf("%w: run %d chunk %d is out of order", ErrCorrupt, i, j)
			}
		}
		m.Runs = append(m.Runs, r)
	}
	return m, nil
}

// upgradeV1 reads a format 1 value (before class counters and runs): its
// entries become the inline entries, each count a number of requests.
func upgradeV1(m *Manifest, st *logtallyv1.WindowState) error {
	m.Format = 1
	if len(st.Addrs) != len(st.Counts)*AddrLen {
		return fmt.Errorf("%w: format 1 value with %d address bytes for %d counts", ErrCorrupt, len(st.Addrs), len(st.Counts))
	}
	m.Inline = make([]Entry, 0, len(st.Counts))
	for i, c := range st.Counts {
		if c == 0 {
			continue
		}
		e := Entry{Addr: [AddrLen]byte(st.Addrs[i*AddrLen:]), Counters: Counters{Requests: c}}
		m.Inline = append(m.Inline, e)
		m.Totals.Requests += c
	}
	SortEntries(m.Inline)
	for i := 1; i < len(m.Inline); i++ {
		if m.Inline[i-1].Addr == m.Inline[i].Addr {
			return fmt.Errorf("%w: format 1 value lists %s twice", ErrCorrupt, Unpack(m.Inline[i].Addr))
		}
	}
	return nil
}

func countersPB(c Counters) *logtallyv1.Counters {
	if c.IsZero() {
		return nil
	}
	return &logtallyv1.Counters{Requests: c.Requests, Status_4Xx: c.Status4xx, Status_5Xx: c.Status5xx, AuthFailures: c.AuthFailures, Bytes: c.Bytes}
}

func countersFromPB(c *logtallyv1.Counters) Counters {
	return Counters{
		Requests:     c.GetRequests(),
		Status4xx:    c.GetStatus_4Xx(),
		Status5xx:    c.GetStatus_5Xx(),
		AuthFailures: c.GetAuthFailures(),
		Bytes:        c.GetBytes(),
	}
}

// Chunk is a decoded WindowChunk.
type Chunk struct {
	Generation uint64
	Entries    []Entry
	Bounds     [NumClasses]uint64 // heads only
}

// MarshalChunk encodes a chunk whose entries are already encoded.
func MarshalChunk(generation uint64, entries []byte, bounds []uint64) ([]byte, error) {
	return proto.Marshal(&logtallyv1.WindowChunk{Generation: generation, Entries: entries, Bounds: bounds})
}

// UnmarshalChunk decodes a chunk value.
func UnmarshalChunk(b []byte) (*Chunk, error) {
	var st logtallyv1.WindowChunk
	if err := proto.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%w: chunk: %w", ErrCorrupt, err)
	}
	if len(st.Bounds) != 0 && len(st.Bounds) != int(NumClasses) {
		return nil, fmt.Errorf("%w: chunk has %d bounds", ErrCorrupt, len(st.Bounds))
	}
	c := &Chunk{Generation: st.Generation}
	copy(c.Bounds[:], st.Bounds)
	var err error
	if c.Entries, err = DecodeEntries(nil, st.Entries); err != nil {
		return nil, fmt.Errorf("chunk: %w", err)
	}
	return c, nil
}
