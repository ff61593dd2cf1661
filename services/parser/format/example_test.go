package format_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/logtally/logtally/services/parser/format"
)

func ExampleParser_Parse() {
	p := format.New(format.Options{})
	received := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

	var rec format.Record
	line := []byte(`203.0.113.7 - - [24/Nov/2026:10:00:00 +0530] "GET /index.html HTTP/1.1" 200 5124 "-" "curl/8.5.0"`)
	if err := p.Parse(line, format.Auto, received, &rec); err != nil {
		fmt.Println("error:", err)
		return
	}
	fmt.Println(rec.Addr, rec.Time.Format(time.RFC3339), string(rec.Method), string(rec.Path), rec.Status, rec.Size, string(rec.UserAgent))

	err := p.Parse([]byte(`192.0.2.1 - - [31/Feb/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5`), format.CLF, received, &rec)
	fmt.Println(errors.Is(err, format.ErrBadTimestamp), err)
	// Output:
	// 203.0.113.7 2026-11-24T04:30:00Z GET /index.html 200 5124 curl/8.5.0
	// true bad timestamp: "31/Feb/2026:10:00:00 +0000"
}
