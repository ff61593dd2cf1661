package export

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/logtally/logtally/internal/dims"
)

// pgWorkers is how many windows are written to PostgreSQL at once (and
// the pool's size).
const pgWorkers = 4

// stageTable is a temporary table of each connection: a window's rows are
// copied into it, then upserted into their tables in the same transaction.
const stageTable = "logtally_stage"

// postgres upserts every window into the logtally_*_counts tables. Each
// window revision is written in one transaction that also records the
// revision in logtally_export_state, so a window written twice (a restart
// after kill -9, two exporters) converges to the same rows, and an older
// revision never overwrites a newer one.
type postgres struct {
	s    *Service
	dsn  string
	q    *queue
	pool *pgxpool.Pool

	mu       sync.Mutex
	exported map[ref]uint64
	err      error // of the last connect or write; nil when healthy
	inflight oldestAt
}

func (p *postgres) oldest() (time.Time, bool) { return p.inflight.get(p.q) }

func (p *postgres) forget(r ref) {
	p.mu.Lock()
	delete(p.exported, r)
	p.mu.Unlock()
}

func newPostgres(s *Service, dsn string) *postgres {
	return &postgres{s: s, dsn: dsn, q: newQueue(), exported: map[ref]uint64{}, err: errors.New("postgres: not connected yet")}
}

func (p *postgres) name() string { return "postgres" }

func (p *postgres) queue() *queue { return p.q }

func (p *postgres) setErr(err error) {
	p.mu.Lock()
	p.err = err
	p.mu.Unlock()
}

// ready reports whether the sink is connected and its last write worked.
func (p *postgres) ready() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

func (p *postgres) close() {
	if p.pool != nil {
		p.pool.Close()
	}
}

// countsTable is the DDL of one counts table.
func countsTable(d dims.Dim) string {
	typ := "text"
	if d == 0 {
		typ = "inet"
	}
	return fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
	resolution text NOT NULL,
	window_start timestamptz NOT NULL,
	%s %s NOT NULL,
	requests bigint NOT NULL,
	status_4xx bigint NOT NULL,
	status_5xx bigint NOT NULL,
	auth_failures bigint NOT NULL,
	bytes bigint NOT NULL,
	PRIMARY KEY (resolution, window_start, %s)
)`, table(d), column(d), typ, column(d))
}

// schema is created when absent, under an advisory lock so that two
// exporters starting together do not race on CREATE TABLE.
func schema() []string {
	out := []string{`SELECT pg_advisory_xact_lock(7405112600911)`, countsTable(0)}
	for _, d := range dims.All {
		out = append(out, countsTable(d))
	}
	return append(out,
		// The revision of every window written (bucket, "<start>.<p>"),
		// and whether it was its top-K cut.
		`CREATE TABLE IF NOT EXISTS logtally_export_state (
	bucket text NOT NULL,
	window_key text NOT NULL,
	revision bigint NOT NULL,
	top_k boolean NOT NULL DEFAULT false,
	exported_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (bucket, window_key)
)`,
		// Each partition's remainder of a cut field window; the (other)
		// row of a field table is their sum.
		`CREATE TABLE IF NOT EXISTS logtally_export_other (
	field text NOT NULL,
	resolution text NOT NULL,
	window_start timestamptz NOT NULL,
	part integer NOT NULL,
	requests bigint NOT NULL,
	status_4xx bigint NOT NULL,
	status_5xx bigint NOT NULL,
	auth_failures bigint NOT NULL,
	bytes bigint NOT NULL,
	PRIMARY KEY (field, resolution, window_start, part)
)`)
}

func (p *postgres) connect(ctx context.Context) error {
	cfg, err := pgxpool.ParseConfig(p.dsn)
	if err != nil {
		return errors.New("export.postgres.dsn is not a PostgreSQL connection string")
	}
	cfg.MaxConns = pgWorkers
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, `CREATE TEMP TABLE IF NOT EXISTS `+stageTable+` (
	dim smallint NOT NULL,
	ip inet,
	value text,
	other boolean NOT NULL,
	requests bigint NOT NULL,
	status_4xx bigint NOT NULL,
	status_5xx bigint NOT NULL,
	auth_failures bigint NOT NULL,
	bytes bigint NOT NULL
) ON COMMIT DELETE ROWS`)
		return err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		for _, q := range schema() {
			if _, err := tx.Exec(ctx, q); err != nil {
				return fmt.Errorf("create tables: %w", err)
			}
		}
		return nil
	})
	if err == nil {
		err = p.loadState(ctx, pool)
	}
	if err != nil {
		pool.Close()
		return fmt.Errorf("postgres: %w", err)
	}
	p.pool = pool
	return nil
}

// loadState reads which revisions were written, so that a restart writes
// only the windows that changed since.
func (p *postgres) loadState(ctx context.Context, pool *pgxpool.Pool) error {
	byName := map[string]int{}
	for _, b := range p.s.buckets {
		byName[b.res.Bucket()] = b.idx
	}
	rows, err := pool.Query(ctx, `SELECT bucket, window_key, revision FROM logtally_export_state`)
	if err != nil {
		return fmt.Errorf("read logtally_export_state: %w", err)
	}
	var bucketName, key string
	var rev int64
	p.mu.Lock()
	defer p.mu.Unlock()
	_, err = pgx.ForEachRow(rows, []any{&bucketName, &key, &rev}, func() error {
		b, ok := byName[bucketName]
		if !ok {
			return nil
		}
		r, ok := parseRef(b, key)
		if ok {
			p.exported[r] = uint64(rev)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read logtally_export_state: %w", err)
	}
	return nil
}

// run connects (retrying), then writes what the queue collects, one round
// per interval.
func (p *postgres) run(ctx context.Context) {
	backoff := time.Second
	for p.pool == nil {
		err := p.connect(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			break
		}
		p.setErr(err)
		p.s.m.failures.WithLabelValues(p.name()).Inc()
		p.s.log.Warn("postgres export: connect failed; retrying", "error", err, "backoff", backoff)
		if !sleep(ctx, backoff) {
			return
		}
		backoff = min(backoff*2, 30*time.Second)
	}
	p.setErr(nil)
	p.s.log.Info("postgres export connected")
	p.s.rounds(ctx, p, pgWorkers, p.pending, p.export, &p.inflight)
}

// pending reports whether r has a revision newer than the one written.
func (p *postgres) pending(r ref) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.s.follow.revision(r) > p.exported[r]
}

// export writes the newest revision of window r.
func (p *postgres) export(ctx context.Context, r ref) error {
	for attempt := 0; ; attempt++ {
		w, err := p.s.load(ctx, r)
		if err != nil || w == nil {
			return err
		}
		_, err = p.write(ctx, w)
		if errors.Is(err, errStale) && attempt < 5 {
			continue
		}
		p.setErr(err)
		return err
	}
}

var upsertSet = func() string {
	var set, old, new []string
	for _, c := range classColumns {
		set = append(set, c+" = EXCLUDED."+c)
		old = append(old, "t."+c)
		new = append(new, "EXCLUDED."+c)
	}
	return "DO UPDATE SET " + strings.Join(set, ", ") + " WHERE (" + strings.Join(old, ", ") + ") IS DISTINCT FROM (" + strings.Join(new, ", ") + ")"
}()

var classList = strings.Join(classColumns[:], ", ")

// upsertSQL upserts the staged rows of field d (0: the IPs) into its table.
func upsertSQL(d dims.Dim) string {
	src := "ip"
	where := ""
	if d != 0 {
		src, where = "value", " WHERE dim = "+fmt.Sprint(int(d))+" AND NOT other"
	}
	return fmt.Sprintf(`INSERT INTO %s AS t (resolution, window_start, %s, %s) SELECT $1, $2, %s, %s FROM %s%s ON CONFLICT (resolution, window_start, %s) %s`,
		table(d), column(d), classList, src, classList, stageTable, where, column(d), upsertSet)
}

// otherSQL records a partition's remainder of field d and sets the
// field's (other) row to the sum over partitions.
func otherSQL(d dims.Dim) []string {
	sums := make([]string, len(classColumns))
	for i, c := range classColumns {
		sums[i] = "sum(" + c + ")::bigint"
	}
	return []string{
		fmt.Sprintf(`INSERT INTO logtally_export_other AS t (field, resolution, window_start, part, %s) SELECT '%s', $1, $2, $3, %s FROM %s WHERE dim = %d AND other ON CONFLICT (field, resolution, window_start, part) %s`,
			classList, d, classList, stageTable, int(d), upsertSet),
		fmt.Sprintf(`INSERT INTO %s AS t (resolution, window_start, %s, %s) SELECT resolution, window_start, '%s', %s FROM logtally_export_other WHERE field = '%s' AND resolution = $1 AND window_start = $2 GROUP BY resolution, window_start ON CONFLICT (resolution, window_start, %s) %s`,
			table(d), column(d), classList, OtherValue, strings.Join(sums, ", "), d, column(d), upsertSet),
	}
}

// write writes window w in one transaction, unless logtally_export_state
// already has this revision or a newer one.
func (p *postgres) write(ctx context.Context, w *window) (bool, error) {
	bucketName, key := w.b.res.Bucket(), w.ref.key()
	wrote := false
	var fields [256]int
	others := map[dims.Dim]bool{}
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO logtally_export_state (bucket, window_key, revision) VALUES ($1, $2, 0) ON CONFLICT DO NOTHING`, bucketName, key); err != nil {
			return fmt.Errorf("state of %s/%s: %w", bucketName, key, err)
		}
		var have int64
		var wasCut bool
		if err := tx.QueryRow(ctx, `SELECT revision, top_k FROM logtally_export_state WHERE bucket = $1 AND window_key = $2 FOR UPDATE`, bucketName, key).Scan(&have, &wasCut); err != nil {
			return fmt.Errorf("state of %s/%s: %w", bucketName, key, err)
		}
		if uint64(have) >= w.rev {
			return nil
		}
		// Stream the window into the stage table.
		ri := p.s.rows(ctx, w)
		var rerr error
		cols := []string{"dim", "ip", "value", "other", "requests", "status_4xx", "status_5xx", "auth_failures", "bytes"}
		n, err := tx.CopyFrom(ctx, pgx.Identifier{stageTable}, cols, pgx.CopyFromFunc(func() ([]any, error) {
			r, ok, err := ri.next()
			if !ok {
				rerr = err
				return nil, err
			}
			fields[r.dim]++
			var ip, value any
			if r.dim == 0 {
				ip = r.ip
			} else {
				value = r.value
				if r.other {
					others[r.dim] = true
				}
			}
			return []any{int16(r.dim), ip, value, r.other, r.c[0], r.c[1], r.c[2], r.c[3], r.c[4]}, nil
		}))
		if err != nil {
			if rerr != nil {
				return rerr
			}
			return fmt.Errorf("copy window %s/%s: %w", bucketName, key, err)
		}
		start, res := w.start(), w.b.res.Name
		b := &pgx.Batch{}
		if !w.b.dims() {
			b.Queue(upsertSQL(0), res, start)
			p.s.m.rows.WithLabelValues(p.name(), table(0)).Add(float64(n))
		} else {
			for _, d := range dims.All {
				if fields[d] == 0 {
					continue
				}
				b.Queue(upsertSQL(d), res, start)
				p.s.m.rows.WithLabelValues(p.name(), table(d)).Add(float64(fields[d]))
				if others[d] {
					// Partitions of one window sum into one (other) row:
					// one transaction at a time, so that each sees the
					// remainders the others committed.
					b.Queue(`SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, fmt.Sprintf("logtally other %s %s %d", d, res, w.ref.start))
					q := otherSQL(d)
					b.Queue(q[0], res, start, w.ref.part)
					b.Queue(q[1], res, start)
				}
			}
		}
		cut := w.m.TopK > 0
		b.Queue(`UPDATE logtally_export_state SET revision = $3, top_k = $4, exported_at = now() WHERE bucket = $1 AND window_key = $2`, bucketName, key, int64(w.rev), cut)
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("upsert window %s/%s: %w", bucketName, key, err)
		}
		if cut && !wasCut {
			if err := p.dropFolded(ctx, tx, w); err != nil {
				return err
			}
		}
		wrote = true
		return nil
	})
	if err != nil {
		return false, err
	}
	p.mu.Lock()
	if w.rev > p.exported[w.ref] {
		p.exported[w.ref] = w.rev
	}
	p.mu.Unlock()
	if wrote {
		p.s.m.windows.WithLabelValues(p.name(), w.b.dataset()).Inc()
	}
	return wrote, nil
}

// dropFolded deletes, after a field window of this partition was cut to
// its top values, the rows of the values it folded into (other): they are
// the values of the window's rows that are not staged and that this
// partition counted (their key's partition).
func (p *postgres) dropFolded(ctx context.Context, tx pgx.Tx, w *window) error {
	parts := p.s.deps.Topology.Partitions
	for _, d := range dims.All {
		q := fmt.Sprintf(`SELECT %s FROM %s t WHERE resolution = $1 AND window_start = $2 AND %s <> $3 AND NOT EXISTS (SELECT 1 FROM %s s WHERE s.dim = %d AND NOT s.other AND s.value = t.%s)`,
			column(d), table(d), column(d), stageTable, int(d), column(d))
		rows, err := tx.Query(ctx, q, w.b.res.Name, w.start(), OtherValue)
		if err != nil {
			return fmt.Errorf("folded values of %s: %w", table(d), err)
		}
		var v string
		var drop []string
		_, err = pgx.ForEachRow(rows, []any{&v}, func() error {
			if dims.Partition(keyOfValue(d, v), parts) == w.ref.part {
				drop = append(drop, v)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("folded values of %s: %w", table(d), err)
		}
		if len(drop) == 0 {
			continue
		}
		if _, err := tx.Exec(ctx, fmt.Sprintf(`DELETE FROM %s WHERE resolution = $1 AND window_start = $2 AND %s = ANY($3)`, table(d), column(d)), w.b.res.Name, w.start(), drop); err != nil {
			return fmt.Errorf("delete folded values of %s: %w", table(d), err)
		}
	}
	return nil
}
