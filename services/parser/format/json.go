package format

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/tidwall/gjson"
)

type jsonKind uint8

const (
	jIP jsonKind = iota + 1
	jTime
	jMethod
	jPath
	jRequest
	jStatus
	jSize
	jUA
	jVHost
)

type jsonKey struct {
	kind jsonKind
	prio int // lower wins when several keys of one kind are present
}

// jsonKeys maps the keys of one JSON object level to what they hold, and
// the keys whose object values hold further fields to their own level. A
// configured name "a.b" means key "b" inside the object at key "a"
// (Caddy's "request.remote_ip"), and also the flat key "a.b" that some
// shippers write instead of nesting.
type jsonKeys struct {
	keys   map[string]jsonKey
	nested map[string]*jsonKeys
}

func (k *jsonKeys) add(name string, key jsonKey) {
	if _, dup := k.keys[name]; !dup {
		k.keys[name] = key
	}
	first, rest, ok := strings.Cut(name, ".")
	if !ok || first == "" || rest == "" {
		return
	}
	n := k.nested[first]
	if n == nil {
		n = &jsonKeys{keys: map[string]jsonKey{}, nested: map[string]*jsonKeys{}}
		k.nested[first] = n
	}
	n.add(rest, key)
}

func buildJSONKeys(ipFields, timeFields []string) *jsonKeys {
	m := &jsonKeys{keys: map[string]jsonKey{}, nested: map[string]*jsonKeys{}}
	add := func(kind jsonKind, names ...string) {
		for i, n := range names {
			m.add(n, jsonKey{kind, i})
		}
	}
	add(jIP, ipFields...)
	add(jTime, timeFields...)
	add(jMethod, "method", "request_method", "request.method")
	add(jPath, "path", "uri", "request_uri", "url", "request.uri")
	add(jRequest, "request")
	add(jStatus, "status", "status_code")
	add(jSize, "bytes", "body_bytes_sent", "size", "bytes_sent")
	add(jUA, "user_agent", "http_user_agent", "ua", "useragent")
	add(jVHost, "host", "vhost", "server_name", "http_host", "request.host")
	return m
}

// jsonPick remembers, per kind, the highest-priority value seen so far.
type jsonPick struct {
	val  gjson.Result
	prio int
	set  bool
}

func (j *jsonPick) offer(v gjson.Result, prio int) {
	if !j.set || prio < j.prio {
		*j = jsonPick{v, prio, true}
	}
}

// parseJSON reads one JSON object. Keys are matched exactly
// (case-sensitive), at the top level or, for dotted names, in nested
// objects. Unusable optional fields (status, size, ...)
// are ignored rather than failing the line; IP and time are checked.
func (p *Parser) parseJSON(line []byte, received time.Time, rec *Record) error {
	if line[0] != '{' {
		return fmt.Errorf("%w: not an object: %s", ErrBadJSON, q(line))
	}
	if !gjson.ValidBytes(line) {
		return fmt.Errorf("%w: %s", ErrBadJSON, q(line))
	}
	// gjson works on strings; a view of line avoids copying it, and the
	// Results it yields alias line just as CLF fields do.
	s := unsafe.String(unsafe.SliceData(line), len(line))

	var (
		ipAddr  netip.Addr
		ipPrio  int
		badIP   []byte
		seenIP  bool
		picks   [jVHost + 1]jsonPick
		request []byte
	)
	var visit func(keys *jsonKeys, obj gjson.Result)
	visit = func(keys *jsonKeys, obj gjson.Result) {
		obj.ForEach(func(k, v gjson.Result) bool {
			if n := keys.nested[k.Str]; n != nil && v.IsObject() {
				visit(n, v)
			}
			key, ok := keys.keys[k.Str]
			if !ok {
				return true
			}
			if key.kind != jIP {
				picks[key.kind].offer(v, key.prio)
				return true
			}
			// Every IP field is examined so that a placeholder in a
			// preferred field ("remote_addr":"-") does not hide a usable
			// one.
			val := resultBytes(line, v)
			if v.Type != gjson.String || isPlaceholder(val) {
				return true
			}
			seenIP = true
			a, ok := addrWithPort(trimSpace(firstElem(val)))
			if !ok {
				if badIP == nil {
					badIP = val
				}
				return true
			}
			if !ipAddr.IsValid() || key.prio < ipPrio {
				ipAddr, ipPrio = a, key.prio
			}
			return true
		})
	}
	visit(p.jsonKeys, gjson.Parse(s))

	switch {
	case ipAddr.IsValid():
	case seenIP:
		return fmt.Errorf("%w: %s", ErrBadIP, q(badIP))
	default:
		return fmt.Errorf("%w: none of the JSON IP fields is present", ErrNoClientIP)
	}

	t := received
	if pk := picks[jTime]; pk.set {
		raw := rawBytes(line, pk.val)
		if pk.val.Type == gjson.String {
			raw = resultBytes(line, pk.val)
		}
		if pk.val.Type != gjson.Null && !isPlaceholder(raw) {
			var ok bool
			if t, ok = jsonTime(pk.val, raw); !ok {
				return fmt.Errorf("%w: %s", ErrBadTimestamp, q(raw))
			}
			if err := p.checkTime(t, received, raw); err != nil {
				return err
			}
		}
	}
	rec.Addr, rec.Time = ipAddr, t

	if pk := picks[jRequest]; pk.set && pk.val.Type == gjson.String {
		request = resultBytes(line, pk.val)
		rec.Method, rec.Path = splitRequest(request)
	}
	if pk := picks[jMethod]; pk.set && pk.val.Type == gjson.String {
		if b := resultBytes(line, pk.val); len(b) > 0 {
			rec.Method = b
		}
	}
	if pk := picks[jPath]; pk.set && pk.val.Type == gjson.String {
		if b := resultBytes(line, pk.val); len(b) > 0 {
			rec.Path = b
		}
	}
	if pk := picks[jStatus]; pk.set {
		if v, ok := jsonUint(line, pk.val); ok && v < 1000 {
			rec.Status = uint32(v)
			rec.AuthFailure = AuthFailureStatus(rec.Status)
		}
	}
	if pk := picks[jSize]; pk.set {
		if v, ok := jsonUint(line, pk.val); ok {
			rec.Size = v
		}
	}
	if pk := picks[jUA]; pk.set && pk.val.Type == gjson.String {
		if b := resultBytes(line, pk.val); !isPlaceholder(b) {
			rec.UserAgent = b
		}
	}
	if pk := picks[jVHost]; pk.set && pk.val.Type == gjson.String {
		if b := resultBytes(line, pk.val); !isPlaceholder(b) {
			rec.VHost = b
		}
	}
	return nil
}

func isPlaceholder(b []byte) bool {
	b = trimSpace(b)
	return len(b) == 0 || (len(b) == 1 && b[0] == '-')
}

func firstElem(b []byte) []byte {
	for i, c := range b {
		if c == ',' {
			return b[:i]
		}
	}
	return b
}

// resultBytes returns a string value's bytes, aliasing line when the JSON
// string has no escapes (the common case) and copying only when gjson had
// to unescape it.
func resultBytes(line []byte, v gjson.Result) []byte {
	if v.Type != gjson.String {
		return nil
	}
	if len(v.Raw) == len(v.Str)+2 && v.Index >= 0 && v.Index+len(v.Raw) <= len(line) && line[v.Index] == '"' {
		return line[v.Index+1 : v.Index+len(v.Raw)-1 : v.Index+len(v.Raw)-1]
	}
	return []byte(v.Str)
}

// rawBytes returns the raw JSON text of v as a slice of line.
func rawBytes(line []byte, v gjson.Result) []byte {
	if v.Index >= 0 && v.Index+len(v.Raw) <= len(line) {
		return line[v.Index : v.Index+len(v.Raw) : v.Index+len(v.Raw)]
	}
	return []byte(v.Raw)
}

// jsonUint accepts a non-negative integer given as a number or a string.
func jsonUint(line []byte, v gjson.Result) (uint64, bool) {
	switch v.Type {
	case gjson.Number:
		return parseUint(rawBytes(line, v))
	case gjson.String:
		b := resultBytes(line, v)
		if len(b) == 1 && b[0] == '-' {
			return 0, true
		}
		return parseUint(b)
	}
	return 0, false
}

// jsonTime accepts RFC 3339, the nginx $time_local layout, or Unix epoch
// time as a number or numeric string. Epoch units are told apart by
// magnitude: values below 1e11 are seconds (up to year 5138), below 1e14
// milliseconds, below 1e17 microseconds, otherwise nanoseconds.
func jsonTime(v gjson.Result, raw []byte) (time.Time, bool) {
	if v.Type == gjson.String {
		if len(raw) >= 5 && raw[4] == '-' {
			return parseISO(raw)
		}
		if len(raw) >= 3 && raw[2] == '/' {
			return parseCLFTime(raw)
		}
	} else if v.Type != gjson.Number {
		return time.Time{}, false
	}
	return epochTime(raw)
}

func epochTime(raw []byte) (time.Time, bool) {
	if n, ok := parseUint(raw); ok {
		if n > math.MaxInt64 {
			return time.Time{}, false
		}
		switch x := int64(n); {
		case x < 1e11:
			return time.Unix(x, 0).UTC(), true
		case x < 1e14:
			return time.UnixMilli(x).UTC(), true
		case x < 1e17:
			return time.UnixMicro(x).UTC(), true
		default:
			return time.Unix(0, x).UTC(), true
		}
	}
	f, err := strconv.ParseFloat(unsafe.String(unsafe.SliceData(raw), len(raw)), 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return time.Time{}, false
	}
	var ns float64
	switch {
	case f < 1e11:
		ns = f * 1e9
	case f < 1e14:
		ns = f * 1e6
	case f < 1e17:
		ns = f * 1e3
	default:
		ns = f
	}
	if ns >= math.MaxInt64 {
		return time.Time{}, false
	}
	return time.Unix(0, int64(ns)).UTC(), true
}
