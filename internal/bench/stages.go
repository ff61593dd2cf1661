package bench

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/google/pprof/profile"
)

// StageCPU is the CPU one stage used during the run, from the profile.
type StageCPU struct {
	Stage   string  `json:"stage"`
	Seconds float64 `json:"cpu_seconds"`
	Share   float64 `json:"share"`
}

const modulePrefix = "github.com/logtally/logtally/"

// stageOf names the stage a stack belongs to: the first logtally frame
// from the goroutine's root decides (a query handler runs under net/http,
// a partition under the aggregator's goroutine); stacks without one are the
// embedded NATS server, the NATS client's own goroutines or the runtime.
func stageOf(s *profile.Sample) string {
	var sawServer, sawClient bool
	for i := len(s.Location) - 1; i >= 0; i-- {
		for j := len(s.Location[i].Line) - 1; j >= 0; j-- {
			fn := s.Location[i].Line[j].Function
			if fn == nil {
				continue
			}
			name := fn.Name
			if rest, ok := strings.CutPrefix(name, modulePrefix); ok {
				switch {
				case strings.HasPrefix(rest, "services/ingest"):
					return "ingest"
				case strings.HasPrefix(rest, "services/parser"):
					return "parser"
				case strings.HasPrefix(rest, "services/aggregator"):
					return "aggregator"
				case strings.HasPrefix(rest, "services/query"), strings.HasPrefix(rest, "internal/windows"):
					return "query"
				case strings.HasPrefix(rest, "internal/bench"), strings.HasPrefix(rest, "internal/loggen"):
					return "load generator (bench)"
				}
				continue
			}
			switch {
			case strings.HasPrefix(name, "github.com/nats-io/nats-server/"):
				sawServer = true
			case strings.HasPrefix(name, "github.com/nats-io/nats.go"):
				sawClient = true
			}
		}
	}
	switch {
	case sawServer:
		return "nats-server (embedded)"
	case sawClient:
		return "nats client"
	}
	return "runtime, GC, other"
}

// cpuByStage attributes the samples of a CPU profile to stages.
func cpuByStage(raw []byte) ([]StageCPU, error) {
	p, err := profile.Parse(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("parse cpu profile: %w", err)
	}
	vi := -1
	for i, st := range p.SampleType {
		if st.Type == "cpu" {
			vi = i
		}
	}
	if vi < 0 {
		return nil, fmt.Errorf("cpu profile has no cpu samples")
	}
	by := map[string]int64{}
	var total int64
	for _, s := range p.Sample {
		v := s.Value[vi]
		by[stageOf(s)] += v
		total += v
	}
	out := make([]StageCPU, 0, len(by))
	for st, v := range by {
		out = append(out, StageCPU{Stage: st, Seconds: float64(v) / 1e9, Share: float64(v) / float64(max(total, 1))})
	}
	slices.SortFunc(out, func(a, b StageCPU) int {
		if a.Seconds != b.Seconds {
			if a.Seconds > b.Seconds {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Stage, b.Stage)
	})
	return out, nil
}
