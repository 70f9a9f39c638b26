-- minicloud metering schema (migration versions 1000-1999 belong to the
-- metering crate). All times are UTC unix milliseconds (INTEGER); money is
-- integer micro-units of the price book's currency; quantities are integers
-- in each meter's base unit (see metering/src/meter.rs).

-- One row per (project, resource, meter): usage rows refer to it by id so
-- that the big table stays narrow and groups by an integer.
CREATE TABLE metering_series (
    series_id     INTEGER PRIMARY KEY,
    project       TEXT NOT NULL,
    resource_id   TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    meter         TEXT NOT NULL,
    UNIQUE (project, resource_id, resource_type, meter)
);

-- Usage: point events (rate IS NULL, ts_start = ts_end, quantity given) and
-- interval rows written by run settlement (quantity = rate * (ts_end -
-- ts_start), never crossing a UTC day boundary; day = ts_start / 86400000).
-- seq is the rowid: it only grows, and closing a month records the highest
-- seq it billed.
CREATE TABLE metering_usage (
    seq       INTEGER PRIMARY KEY,
    source    TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    series_id INTEGER NOT NULL REFERENCES metering_series (series_id),
    day       INTEGER NOT NULL,
    ts_start  INTEGER NOT NULL,
    ts_end    INTEGER NOT NULL,
    rate      INTEGER,
    quantity  INTEGER NOT NULL,
    data      TEXT,
    UNIQUE (source, event_id),
    CHECK (ts_end >= ts_start)
);
-- Covering index for every aggregation. Day first: usage arrives roughly in
-- time order, so a batch only touches the current day's pages (a series-first
-- index would touch pages all over the table on every batch); queries seek
-- (day, series) pairs.
CREATE INDEX metering_usage_day_series
    ON metering_usage (day, series_id, ts_start, ts_end, rate, quantity);

-- Usage rows written after the month they belong to was closed: they are
-- billed as adjustment lines on the next invoice.
CREATE TABLE metering_late (
    seq INTEGER PRIMARY KEY
);

-- Single row: the end of the last closed month, the seq it billed through,
-- and the earliest usage time ever recorded.
CREATE TABLE metering_state (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    closed_through INTEGER,
    close_seq      INTEGER NOT NULL DEFAULT 0,
    first_ts       INTEGER
);
INSERT INTO metering_state (id) VALUES (1);

-- Run intervals (instances, and gauges such as provisioned volumes).
CREATE TABLE metering_runs (
    run_id         INTEGER PRIMARY KEY,
    project        TEXT NOT NULL,
    resource_id    TEXT NOT NULL,
    resource_type  TEXT NOT NULL,
    started_at     INTEGER NOT NULL,
    ended_at       INTEGER,
    end_reason     TEXT,
    state          TEXT NOT NULL CHECK (state IN ('running', 'paused', 'closed')),
    state_since    INTEGER NOT NULL,
    billed_through INTEGER NOT NULL,
    running_ms     INTEGER NOT NULL DEFAULT 0,
    paused_ms      INTEGER NOT NULL DEFAULT 0,
    min_billed_ms  INTEGER NOT NULL,
    granularity_ms INTEGER NOT NULL CHECK (granularity_ms > 0),
    running_rates  TEXT NOT NULL,
    paused_rates   TEXT NOT NULL,
    vcpus          INTEGER,
    memory_mib     INTEGER,
    next_row       INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX metering_runs_open ON metering_runs (resource_id) WHERE ended_at IS NULL;
CREATE INDEX metering_runs_resource ON metering_runs (resource_id, started_at);

-- Closed billing periods (calendar months, closed in order).
CREATE TABLE metering_periods (
    month        TEXT PRIMARY KEY,
    period_start INTEGER NOT NULL,
    period_end   INTEGER NOT NULL,
    closed_at    INTEGER NOT NULL,
    seq_through  INTEGER NOT NULL
);

CREATE TABLE metering_invoices (
    invoice_id   INTEGER PRIMARY KEY,
    project      TEXT NOT NULL,
    month        TEXT NOT NULL,
    period_start INTEGER NOT NULL,
    period_end   INTEGER NOT NULL,
    currency     TEXT NOT NULL,
    total_micros INTEGER NOT NULL,
    closed_at    INTEGER NOT NULL,
    UNIQUE (project, month)
);

CREATE TABLE metering_invoice_lines (
    invoice_id    INTEGER NOT NULL REFERENCES metering_invoices (invoice_id),
    line_no       INTEGER NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('usage', 'adjustment')),
    resource_id   TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    meter         TEXT NOT NULL,
    seg_from      INTEGER NOT NULL,
    seg_to        INTEGER NOT NULL,
    quantity_base INTEGER NOT NULL,
    unit_price    TEXT NOT NULL,
    amount_micros INTEGER NOT NULL,
    PRIMARY KEY (invoice_id, line_no)
);

-- A closed invoice never changes.
CREATE TRIGGER metering_invoices_no_update BEFORE UPDATE ON metering_invoices
BEGIN SELECT RAISE(ABORT, 'closed invoices are immutable'); END;
CREATE TRIGGER metering_invoices_no_delete BEFORE DELETE ON metering_invoices
BEGIN SELECT RAISE(ABORT, 'closed invoices are immutable'); END;
CREATE TRIGGER metering_invoice_lines_no_update BEFORE UPDATE ON metering_invoice_lines
BEGIN SELECT RAISE(ABORT, 'closed invoices are immutable'); END;
CREATE TRIGGER metering_invoice_lines_no_delete BEFORE DELETE ON metering_invoice_lines
BEGIN SELECT RAISE(ABORT, 'closed invoices are immutable'); END;

-- Budgets: monthly thresholds per project, and the crossings emitted.
CREATE TABLE metering_budgets (
    project           TEXT NOT NULL,
    threshold_micros  INTEGER NOT NULL CHECK (threshold_micros > 0),
    PRIMARY KEY (project, threshold_micros)
);

CREATE TABLE metering_budget_events (
    event_id         INTEGER PRIMARY KEY,
    project          TEXT NOT NULL,
    month            TEXT NOT NULL,
    threshold_micros INTEGER NOT NULL,
    accrued_micros   INTEGER NOT NULL,
    currency         TEXT NOT NULL,
    crossed_at       INTEGER NOT NULL,
    UNIQUE (project, month, threshold_micros)
);
