-- Per-context, per-hour roll-ups of the track events of experiment units, so that results
-- read roll-up rows rather than join every unit to its raw events.
--
-- `experiment_unit_events` holds, for each experiment unit (experiment and context), event
-- name and hour, the events the unit sent from its first exposure on: how many, how many
-- with a value, their sum, and the time of the last one. Each row repeats the unit's
-- variation and `multiple_at`, so that results group these rows alone. A results read
-- sums whole rows up to its cut-off; only the rows of the cut-off's own hour whose last
-- event is later than the cut-off are recounted from raw events.
--
-- Ingestion stays one short transaction per batch: it stores raw events, records each
-- batch holding track events in `analytics_pending`, and marks the units whose first
-- exposure, variation or `multiple_at` it changed (`rollup_state` 1). A background
-- compactor (one at a time across instances) adds pending batches' events to the rows of
-- up-to-date units and rebuilds the rows of marked units from raw events, so that the
-- outcome does not depend on the order in which exposures and events arrive.

CREATE TABLE analytics_pending (
    batch_ref BIGINT  NOT NULL PRIMARY KEY REFERENCES event_batches (id) ON DELETE CASCADE,
    -- TRUE only inside a compaction round: the batches the round is processing.
    claimed   BOOLEAN NOT NULL DEFAULT FALSE
);

-- 0: the unit's roll-up rows are up to date; 1: they must be rebuilt; 2: being rebuilt by
-- the current compaction round. Every unit stored before this migration is rebuilt.
ALTER TABLE experiment_units ADD COLUMN rollup_state BIGINT NOT NULL DEFAULT 1;
CREATE INDEX experiment_units_stale ON experiment_units
    (rollup_state, environment_id, experiment_key, context_kind, context_key)
    WHERE rollup_state <> 0;
CREATE INDEX experiment_units_context ON experiment_units (environment_id, context_kind, context_key);

CREATE TABLE experiment_unit_events (
    environment_id BIGINT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    experiment_key TEXT   NOT NULL,
    context_kind   TEXT   NOT NULL,
    context_key    TEXT   NOT NULL,
    event_name     TEXT   NOT NULL,
    -- The start of the hour, in milliseconds since the Unix epoch.
    hour           BIGINT NOT NULL,
    variation      BIGINT NOT NULL,
    multiple_at    BIGINT,
    events         BIGINT NOT NULL,
    valued         BIGINT NOT NULL,
    total          DOUBLE PRECISION NOT NULL,
    last_at        BIGINT NOT NULL,
    PRIMARY KEY (environment_id, experiment_key, context_kind, context_key, event_name, hour)
);
-- Finds the rows a cut-off falls inside of.
CREATE INDEX experiment_unit_events_hour ON experiment_unit_events
    (environment_id, experiment_key, hour, last_at);

-- The same sums over a unit's whole life, one row per unit and event name: results as of
-- a time after every event (results "now") read these rather than group hourly rows.
CREATE TABLE experiment_unit_totals (
    environment_id BIGINT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    experiment_key TEXT   NOT NULL,
    context_kind   TEXT   NOT NULL,
    context_key    TEXT   NOT NULL,
    event_name     TEXT   NOT NULL,
    variation      BIGINT NOT NULL,
    multiple_at    BIGINT,
    events         BIGINT NOT NULL,
    valued         BIGINT NOT NULL,
    total          DOUBLE PRECISION NOT NULL,
    last_at        BIGINT NOT NULL,
    PRIMARY KEY (environment_id, experiment_key, context_kind, context_key, event_name)
);
CREATE INDEX experiment_unit_totals_last ON experiment_unit_totals
    (environment_id, experiment_key, last_at);

-- Raw events are now read per context (rebuilding a unit, recounting a cut-off hour).
DROP INDEX track_events_unit;
CREATE INDEX track_events_context ON track_events (environment_id, context_kind, context_key, at);
