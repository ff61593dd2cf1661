package parser

import (
	"bytes"
	"fmt"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/ua-parser/uap-go/uaparser"

	"github.com/logtally/logtally/internal/counts"
	"github.com/logtally/logtally/internal/dims"
	"github.com/logtally/logtally/services/parser/format"
)

// Besides the per-IP groups, the parser counts every line under the value
// of each field it has (status, method, path, ...) in a second combiner
// whose keys are internal/dims keys. Both go out in the same record batch,
// so the aggregator's exactly-once bookkeeping covers them alike.
//
// Everything here is a function of the raw batch alone, never of what a
// worker saw before: a redelivered batch must give the same groups, or the
// partitions that stored its first attempt and those that store the second
// would disagree (docs/design.md, step 2). Caches only save work.

// uaUnparsed is the family of the user agents a batch had no budget left
// to classify (see dimsConfig.uaPerBatch).
const uaUnparsed = "Unparsed"

// dimsConfig says which fields are counted and how.
type dimsConfig struct {
	on         [256]bool
	keepQuery  bool
	uaPerBatch int // distinct user agents classified per raw batch
}

func (c *dimsConfig) any() bool {
	for _, d := range dims.All {
		if c.on[d] {
			return true
		}
	}
	return false
}

func parseDimsList(s string) ([256]bool, error) {
	var on [256]bool
	switch s {
	case "all":
		for _, d := range dims.All {
			on[d] = true
		}
		return on, nil
	case "none", "":
		return on, nil
	}
	for _, n := range splitList(s) {
		d, err := dims.Parse(n)
		if err != nil {
			return on, fmt.Errorf("parser.dims: %w", err)
		}
		on[d] = true
	}
	return on, nil
}

// uaClassifier turns a user agent into its family and OS with
// ua-parser's regexes (uap-core). One uncached classification costs
// 0.2–0.6 ms, so results are cached per worker.
type uaClassifier struct {
	p     *uaparser.Parser
	cache map[string]uaResult
}

type uaResult struct{ family, os string }

const uaCacheSize = 1 << 14

var (
	uapOnce sync.Once
	uapP    *uaparser.Parser
	uapErr  error
)

// sharedUAParser compiles the regexes once per process (about 100 ms).
func sharedUAParser() (*uaparser.Parser, error) {
	uapOnce.Do(func() {
		uapP, uapErr = uaparser.New(uaparser.WithCacheSize(1024))
	})
	return uapP, uapErr
}

func (u *uaClassifier) classify(ua []byte) uaResult {
	if r, ok := u.cache[string(ua)]; ok {
		return r
	}
	s := string(ua)
	r := uaResult{family: u.p.ParseUserAgent(s).Family, os: u.p.ParseOs(s).Family}
	if len(u.cache) >= uaCacheSize {
		clear(u.cache)
	}
	u.cache[s] = r
	return r
}

// dimmer adds a record's field values to the dims combiner.
type dimmer struct {
	cfg  *dimsConfig
	comb *combiner
	ua   *uaClassifier
	// seenUA holds the distinct user agents of the current batch that were
	// classified; once it holds cfg.uaPerBatch, other new ones count as
	// uaUnparsed (uaSkipped).
	seenUA    map[string]struct{}
	uaSkipped uint64
	// names are the hashed keys of this batch and their text.
	names map[[counts.AddrLen]byte]string
	num   []byte
	// hints are each field's last slot: consecutive lines often share a
	// status, method or user agent, and then skip the hash.
	hints [256]*slot
}

func newDimmer(cfg *dimsConfig, partitions int) (*dimmer, error) {
	d := &dimmer{cfg: cfg, comb: newCombiner(partitions), seenUA: map[string]struct{}{}, names: map[[counts.AddrLen]byte]string{}}
	if cfg.on[dims.UA] || cfg.on[dims.OS] {
		p, err := sharedUAParser()
		if err != nil {
			return nil, fmt.Errorf("load user-agent regexes: %w", err)
		}
		d.ua = &uaClassifier{p: p, cache: map[string]uaResult{}}
	}
	return d, nil
}

func (d *dimmer) reset() {
	d.comb.reset()
	clear(d.hints[:])
	clear(d.seenUA)
	clear(d.names)
	d.uaSkipped = 0
}

// add counts r under each of its field values.
func (d *dimmer) add(r *format.Record) {
	minute := unixMinute(r.Time)
	on := &d.cfg.on
	if on[dims.Status] && r.Status != 0 {
		d.num = strconv.AppendUint(d.num[:0], uint64(r.Status), 10)
		d.value(dims.Status, minute, d.num, r)
	}
	if on[dims.Method] && len(r.Method) > 0 {
		d.value(dims.Method, minute, r.Method, r)
	}
	if on[dims.Path] && len(r.Path) > 0 {
		p := r.Path
		if !d.cfg.keepQuery {
			if i := bytes.IndexByte(p, '?'); i >= 0 {
				p = p[:i]
			}
		}
		d.value(dims.Path, minute, p, r)
	}
	if on[dims.VHost] && len(r.VHost) > 0 {
		d.value(dims.VHost, minute, r.VHost, r)
	}
	if (on[dims.UA] || on[dims.OS]) && len(r.UserAgent) > 0 {
		res := d.classifyUA(r.UserAgent)
		if on[dims.UA] && res.family != "" {
			d.value(dims.UA, minute, []byte(res.family), r)
		}
		if on[dims.OS] && res.os != "" {
			d.value(dims.OS, minute, []byte(res.os), r)
		}
	}
	if on[dims.Program] && len(r.Program) > 0 {
		d.value(dims.Program, minute, r.Program, r)
	}
	if on[dims.Event] && r.Event != format.EventNone {
		d.value(dims.Event, minute, []byte(r.Event.String()), r)
	}
}

// classifyUA classifies the first uaPerBatch distinct user agents of the
// batch; later new ones are uaUnparsed. The budget depends on the batch
// only, so a redelivery classifies the same ones (see above), and it bounds
// what a flood of random user agents costs: uaPerBatch uncached
// classifications per batch.
func (d *dimmer) classifyUA(ua []byte) uaResult {
	if _, ok := d.seenUA[string(ua)]; !ok {
		if len(d.seenUA) >= d.cfg.uaPerBatch {
			d.uaSkipped++
			return uaResult{family: uaUnparsed, os: uaUnparsed}
		}
		d.seenUA[string(ua)] = struct{}{}
	}
	return d.ua.classify(ua)
}

func (d *dimmer) value(dim dims.Dim, minute int64, v []byte, r *format.Record) {
	v = cutValue(v)
	k, hashed := dims.Key(dim, v)
	if hashed {
		if _, ok := d.names[k]; !ok {
			d.names[k] = string(v)
		}
	}
	d.comb.addHinted(makeKey(minute, k), r, &d.hints[dim])
}

// cutValue keeps at most dims.MaxValueBytes of v, on a UTF-8 boundary.
func cutValue(v []byte) []byte {
	if len(v) <= dims.MaxValueBytes {
		return v
	}
	v = v[:dims.MaxValueBytes]
	for i := 0; i < utf8.UTFMax && len(v) > 0; i++ {
		if r, _ := utf8.DecodeLastRune(v); r != utf8.RuneError {
			break
		}
		v = v[:len(v)-1]
	}
	return v
}

// nameCache remembers which names a worker wrote lately, so that a path
// seen in every batch is written about once a day, not once a batch. The
// names bucket keeps a name topology.NamesMargin past the longest window
// retention, so rewriting daily while in use keeps every name that a
// window holds.
type nameCache struct {
	written map[[counts.AddrLen]byte]int64 // unix seconds
}

const (
	nameCacheSize  = 1 << 17
	nameRewriteAge = 24 * time.Hour
)

// needs reports whether k's name should be written now.
func (c *nameCache) needs(k [counts.AddrLen]byte, now time.Time) bool {
	t, ok := c.written[k]
	return !ok || now.Unix()-t > int64(nameRewriteAge/time.Second)
}

func (c *nameCache) wrote(k [counts.AddrLen]byte, now time.Time) {
	if len(c.written) >= nameCacheSize {
		clear(c.written)
	}
	c.written[k] = now.Unix()
}
