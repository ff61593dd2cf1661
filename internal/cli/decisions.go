package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"text/tabwriter"
	"time"

	logtallyv1 "github.com/logtally/logtally/gen/logtally/v1"
)

const decisionsSynopsis = "logtally decisions list|ban|unban|watch [--addr URL] [--grpc-addr HOST:PORT] …"

const decisionsDescription = `Lists, makes and removes decisions (bans) over the HTTP API, and
follows them over gRPC:

  logtally decisions list                          active decisions, newest first
  logtally decisions ban KEY --duration 1h [--reason TEXT]
                                                   ban an IP or a CIDR by hand
  logtally decisions unban ID                      remove decision ID
  logtally decisions watch [--rule R] [--contains IP] [--within CIDR]
                                                   the decisions in force, then one line
                                                   per decision made, deleted or expired
                                                   (reconnects and resumes; --json for
                                                   one JSON object a line)`

type decisionItem struct {
	ID          uint64    `json:"id"`
	Rule        string    `json:"rule"`
	Key         string    `json:"key"`
	Count       uint64    `json:"count"`
	Threshold   uint64    `json:"threshold"`
	Origin      string    `json:"origin"`
	Reason      string    `json:"reason"`
	Until       time.Time `json:"until"`
	Simulated   bool      `json:"simulated"`
	LeftSeconds float64   `json:"left_seconds"`
}

// Decisions runs `logtally decisions`.
func Decisions(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("decisions", decisionsSynopsis, decisionsDescription, stderr)
	addr := fs.String("addr", DefaultAddr, "base URL of the logtally HTTP API")
	duration := fs.String("duration", "4h", "ban: how long")
	reason := fs.String("reason", "", "ban: why (kept in the decision and its audit record)")
	grpcAddr := fs.String("grpc-addr", DefaultGRPCAddr, "watch: host:port of the logtally gRPC API (plain text)")
	rule := fs.String("rule", "", "watch: only the decisions of this rule (manual: bans by hand)")
	contains := fs.String("contains", "", "watch: only the decisions that ban this IP or CIDR")
	within := fs.String("within", "", "watch: only the decisions inside this CIDR")
	simulated := fs.Bool("simulated", true, "watch: simulate mode's decisions too (flagged)")
	asJSON := fs.Bool("json", false, "watch: one JSON object (the WatchDecisionsResponse) a line")
	if len(args) == 0 {
		fs.Usage()
		return errors.New("decisions: want list, ban, unban or watch")
	}
	verb, rest := args[0], args[1:]
	if verb == "-h" || verb == "--help" {
		fs.Usage()
		return flag.ErrHelp
	}
	// Flags may come before or after the positional argument.
	var pos []string
	for len(rest) > 0 {
		if err := fs.Parse(rest); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		pos, rest = append(pos, fs.Arg(0)), fs.Args()[1:]
	}
	if verb == "watch" {
		if len(pos) != 0 {
			return errors.New("decisions watch takes no arguments")
		}
		req := &logtallyv1.WatchDecisionsRequest{Rule: *rule, Contains: *contains, Within: *within, IncludeSimulated: *simulated}
		return watchDecisions(ctx, *grpcAddr, req, *asJSON, stdout, stderr)
	}
	base, err := baseURL(*addr)
	if err != nil {
		return err
	}
	switch verb {
	case "list":
		if len(pos) != 0 {
			return errors.New("decisions list takes no arguments")
		}
		var out struct {
			Mode  string         `json:"mode"`
			Items []decisionItem `json:"items"`
		}
		if err := call(ctx, http.MethodGet, base+"/api/v1/decisions", nil, &out); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tKEY\tRULE\tCOUNT\tTHRESHOLD\tLEFT\tNOTE")
		for _, d := range out.Items {
			note := d.Reason
			if d.Simulated {
				note = "simulated " + note
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%s\t%s\n", d.ID, d.Key, d.Rule, d.Count, d.Threshold,
				(time.Duration(d.LeftSeconds) * time.Second).String(), note)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%d active (mode %s)\n", len(out.Items), out.Mode)
		return nil
	case "ban":
		if len(pos) != 1 {
			return errors.New("decisions ban takes one IP or CIDR")
		}
		body, _ := json.Marshal(map[string]string{"key": pos[0], "duration": *duration, "reason": *reason})
		var d decisionItem
		if err := call(ctx, http.MethodPost, base+"/api/v1/decisions", body, &d); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "decision %d: %s banned until %s\n", d.ID, d.Key, d.Until.Format(time.RFC3339))
		return nil
	case "unban":
		if len(pos) != 1 {
			return errors.New("decisions unban takes one decision id")
		}
		id, err := strconv.ParseUint(pos[0], 10, 64)
		if err != nil {
			return fmt.Errorf("decision id %q is not a number", pos[0])
		}
		var d decisionItem
		if err := call(ctx, http.MethodDelete, base+"/api/v1/decisions/"+strconv.FormatUint(id, 10), nil, &d); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "decision %d (%s) removed\n", d.ID, d.Key)
		return nil
	}
	fs.Usage()
	return fmt.Errorf("decisions: unknown verb %q (list, ban, unban, watch)", verb)
}

// call sends a JSON request and decodes a 2xx answer into out.
func call(ctx context.Context, method, url string, body []byte, out any) error {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	if resp.StatusCode/100 != 2 {
		return apiError(method, url, resp, data)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, url, err)
	}
	return nil
}
