package query

import (
	"net/url"
	"strconv"
	"strings"

	"github.com/logtally/logtally/internal/counts"
	"github.com/logtally/logtally/internal/windows"
)

// classOf reads class= and its alias status= of a top query (HTTP or
// gRPC) over by (ip or a field name): status=4xx means class=4xx,
// status=5xx class=5xx. The windows count those classes, not status codes,
// so an exact code is refused with the reason; so is a class that differs.
// hasStatus tells an empty status= (refused) from none.
func classOf(class, status string, hasStatus bool, by string) (counts.Class, error) {
	c, err := parseClass(class)
	if err != nil || !hasStatus {
		return c, err
	}
	var alias counts.Class
	switch strings.ToLower(strings.TrimSpace(status)) {
	case "4xx":
		alias = counts.Status4xx
	case "5xx":
		alias = counts.Status5xx
	case "":
		return 0, windows.Invalidf("status is empty; give 4xx or 5xx")
	default:
		if code, err := strconv.Atoi(status); err == nil && code >= 100 && code <= 599 {
			if by == "ip" {
				return 0, windows.Invalidf("status=%d: the per-IP windows count classes (4xx, 5xx), not status codes; use status=4xx or status=5xx, or by=status for the counts per code", code)
			}
			return 0, windows.Invalidf("status=%d: the %s windows count the classes (4xx, 5xx) of each value, not (value, status code) pairs; use status=4xx or status=5xx, or by=status for the counts per code", code, by)
		}
		return 0, windows.Invalidf("status %q is not 4xx or 5xx", status)
	}
	if class != "" && c != alias {
		return 0, windows.Invalidf("status=%s means class=%s and contradicts class=%s; give one of them", status, alias, c)
	}
	return alias, nil
}

// httpClass is classOf for the query parameters of an HTTP request.
func httpClass(q url.Values, by string) (counts.Class, error) {
	return classOf(q.Get("class"), q.Get("status"), q.Has("status"), by)
}

// refusePath answers path=, which no top query takes. The IP windows do
// not count paths, nor do the other fields' windows count (value, path)
// pairs. For by=path a prefix filter cannot be exact: once a window
// closes, each partition keeps only its top K paths by requests and folds
// the rest into other (docs/fields.md), so a path under the prefix may be
// folded while K paths outside it were kept, and the filtered ranking
// would miss it; and paths longer than 14 bytes are keyed by a hash, so a
// prefix is no key range.
func refusePath(q url.Values, by string) error {
	if !q.Has("path") {
		return nil
	}
	if by == "path" {
		return windows.Invalidf("path= (a prefix filter) is not offered: after a window closes each partition keeps only its top paths and folds the rest into other, so the paths under a prefix cannot be ranked exactly; ask by=path with a larger n and filter the answer")
	}
	what := "the " + by + " windows do not count (value, path) pairs"
	if by == "ip" {
		what = "the per-IP windows do not count paths"
	}
	return windows.Invalidf("path= does not combine with by=%s: %s; use by=path", by, what)
}
