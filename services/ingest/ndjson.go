package ingest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"regexp"
	"strings"

	"github.com/tidwall/gjson"
)

// JSON bodies of POST /api/v1/ingest, as HTTP shippers send them:
//
//   - Content-Type application/x-ndjson (also application/jsonl,
//     application/json-lines, application/x-jsonlines): one JSON object per
//     line. Fluent Bit's http output with format json_lines sends
//     {"date":1764000000.123,"log":"<line>"} lines; Vector's http sink with
//     encoding.codec = "json" and framing.method = "newline_delimited" sends
//     {"host":..,"message":"<line>","source_type":..,"timestamp":..} lines.
//   - Content-Type application/json: one JSON array of objects (Vector's
//     http sink with codec json and its default framing, Fluent Bit's
//     format json), or objects one after another (Fluent Bit's json_stream).
//
// The line of an object is the first of the message fields (-ingest.http.
// message-field, default "message,log"; ?message_field= for one request)
// that it has: a string is the line as it is; a number or boolean its JSON
// text; an object or array its compact JSON. A dotted name is a flat key
// first, then a path into nested objects (as -parser.json.ip-fields).
//
// Nothing is dropped: an object without any of the fields (or with null)
// is forwarded whole, compact, as the line, and the parser reads it as a
// JSON log line (-parser.json.ip-fields, -parser.json.time-fields): it
// counts if it holds a client IP and is otherwise a dead letter "no client
// IP: none of the JSON IP fields is present"; the answer's without_message
// and logtally_ingest_json_without_message_total say how many objects had
// no message field. In an NDJSON body, a line that is not a JSON object
// (say plain text, or broken JSON) is forwarded as it is, so that the
// parser counts it or dead-letters it with its reason; empty lines are
// empty entries as in a plain body. An application/json body that is not
// JSON gets 400 and stores nothing.
//
// The shipper's own time field (Fluent Bit's date, Vector's timestamp) is
// when it read the line, not when the event happened, and is not used: a
// line counts at its own timestamp, or at the receive time without one.

// bodyKind is how an ingest body is framed.
type bodyKind int

const (
	bodyLines  bodyKind = iota // newline-delimited lines
	bodyNDJSON                 // one JSON object per line
	bodyJSON                   // a JSON array of objects, or a stream of objects
)

// ingestBodyKind picks the framing of an ingest body from its Content-Type.
// Anything that is not JSON (text/plain, curl's default
// application/x-www-form-urlencoded, none) is newline-delimited lines.
func ingestBodyKind(contentType string) bodyKind {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return bodyLines
	}
	switch mt {
	case "application/x-ndjson", "application/ndjson", "application/jsonl", "application/json-lines",
		"application/x-jsonlines", "application/jsonlines":
		return bodyNDJSON
	case "application/json":
		return bodyJSON
	}
	return bodyLines
}

var messageFieldRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

// parseMessageFields checks a comma-separated list of message fields.
func parseMessageFields(s string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !messageFieldRE.MatchString(f) {
			return nil, fmt.Errorf("message field %q must match %s", f, messageFieldRE)
		}
		out = append(out, f)
	}
	if len(out) == 0 {
		return nil, errors.New("no message field given")
	}
	return out, nil
}

// jsonLines turns JSON objects into lines for a lineHandler.
type jsonLines struct {
	h       lineHandler
	fields  []string
	maxLine int
	noMsg   int // objects without any message field
	objects int
	scratch bytes.Buffer
}

// object emits the line of one JSON value (an element of an array, or a
// value of a stream). v is valid JSON.
func (j *jsonLines) object(v []byte) {
	j.objects++
	v = bytes.TrimSpace(v)
	if len(v) > 0 && v[0] == '{' {
		for _, f := range j.fields {
			r := gjson.GetBytes(v, gjsonEscape(f))
			if !r.Exists() && strings.Contains(f, ".") {
				r = gjson.GetBytes(v, f)
			}
			switch r.Type {
			case gjson.String:
				emit(j.h, []byte(r.Str), j.maxLine)
				return
			case gjson.Number, gjson.True, gjson.False:
				emit(j.h, []byte(r.Raw), j.maxLine)
				return
			case gjson.JSON:
				emit(j.h, j.compact([]byte(r.Raw)), j.maxLine)
				return
			}
		}
		j.noMsg++
	}
	// Not an object, or no message field: the value is the line.
	if len(v) > 0 && v[0] == '"' {
		var s string
		if json.Unmarshal(v, &s) == nil {
			emit(j.h, []byte(s), j.maxLine)
			return
		}
	}
	emit(j.h, j.compact(v), j.maxLine)
}

// compact removes the insignificant spaces and newlines of valid JSON.
func (j *jsonLines) compact(v []byte) []byte {
	if bytes.IndexAny(v, "\n\r\t") < 0 {
		return v
	}
	j.scratch.Reset()
	if json.Compact(&j.scratch, v) != nil {
		return v
	}
	return j.scratch.Bytes()
}

// gjsonEscape makes a field name a gjson path of one flat key.
func gjsonEscape(f string) string {
	if !strings.ContainsAny(f, ".") {
		return f
	}
	return strings.ReplaceAll(f, ".", `\.`)
}

// ndjsonHandler sits between the line framer and the batches: every line
// that is a JSON object becomes the object's line; other lines pass as
// they are.
type ndjsonHandler struct{ j *jsonLines }

func (n ndjsonHandler) line(p []byte) {
	t := bytes.TrimSpace(p)
	if len(t) > 0 && t[0] == '{' && json.Valid(t) {
		n.j.object(t)
		return
	}
	n.j.h.line(p)
}

func (n ndjsonHandler) oversized(prefix []byte, length uint64) { n.j.h.oversized(prefix, length) }
func (n ndjsonHandler) empty()                                 { n.j.h.empty() }

// readJSONBody reads an application/json body (after decompression, bounded
// by the caller's reader) into j: an array of values, or values one after
// another. It returns status 0 on success, else 400 or 413 with a message.
func readJSONBody(rd io.Reader, j *jsonLines) (int, string) {
	dec := json.NewDecoder(bufio.NewReaderSize(rd, 64<<10))
	for {
		var v json.RawMessage
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			return 0, ""
		}
		if err != nil {
			if c, msg := bodyError(err); c != 0 {
				return c, msg
			}
			return http.StatusBadRequest, "invalid JSON body: " + err.Error()
		}
		if t := bytes.TrimSpace(v); len(t) > 0 && t[0] == '[' {
			var elems []json.RawMessage
			if err := json.Unmarshal(t, &elems); err != nil {
				return http.StatusBadRequest, "invalid JSON array: " + err.Error()
			}
			for _, e := range elems {
				j.object(e)
			}
			continue
		}
		j.object(v)
	}
}
