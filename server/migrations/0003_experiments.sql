-- Metrics, experiments, and the roll-ups that keep analytics fast as events grow (Postgres).
--
-- Raw events stay in the tables of 0002. Two roll-ups are maintained in the same
-- transaction as each batch, so that reads never scan raw history:
--
-- * `experiment_units`: one row per experiment and context (the experiment unit), with the
--   variation it was first exposed to, when, and when (if ever) it was first seen with
--   another variation. SDKs deduplicate exposures per session only, so raw exposures grow
--   with traffic; this table grows with the number of distinct contexts, and is what the
--   results query reads (its primary key is the join key to track events).
-- * `evaluation_hourly`: evaluation counters summed per flag, variation, error and hour,
--   which flag usage and stale-flag reports read (their size grows with flags × hours, not
--   with SDK instances × flush windows).
--
-- Track events are kept raw: a metric counts only events after a context's first exposure,
-- which a per-context roll-up cannot know in advance. Their index
-- (environment, name, context, time, value) lets the results query join each unit to its
-- events and read the value from the index alone.

CREATE TABLE metrics (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id  BIGINT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    key         TEXT   NOT NULL,
    name        TEXT   NOT NULL,
    description TEXT   NOT NULL,
    event_name  TEXT   NOT NULL,
    kind        TEXT   NOT NULL,
    version     BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (project_id, key)
);

-- `spec` is the experiment's design as JSON (variations, metrics, planning figures);
-- `previous_serve` the serve its rule or fallthrough had before the start (for a roll
-- back); `decision` JSON once decided.
CREATE TABLE experiments (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    environment_id BIGINT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    key            TEXT   NOT NULL,
    flag_key       TEXT   NOT NULL,
    status         TEXT   NOT NULL,
    spec           TEXT   NOT NULL,
    previous_serve TEXT,
    decision       TEXT,
    version        BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    started_at     BIGINT,
    stopped_at     BIGINT,
    UNIQUE (environment_id, key)
);
CREATE INDEX experiments_status ON experiments (environment_id, status, key);
CREATE INDEX experiments_flag ON experiments (environment_id, flag_key, key);

CREATE TABLE experiment_units (
    environment_id BIGINT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    experiment_key TEXT   NOT NULL,
    context_kind   TEXT   NOT NULL,
    context_key    TEXT   NOT NULL,
    variation      BIGINT NOT NULL,
    first_at       BIGINT NOT NULL,
    -- When the context was first seen with a variation other than `variation`; NULL: never.
    multiple_at    BIGINT,
    PRIMARY KEY (environment_id, experiment_key, context_kind, context_key)
);

-- `variation` is -1 and `error_kind` '' when none, so that they can be part of the key.
CREATE TABLE evaluation_hourly (
    environment_id BIGINT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    flag_key       TEXT   NOT NULL,
    hour           BIGINT NOT NULL,
    variation      BIGINT NOT NULL,
    error_kind     TEXT   NOT NULL,
    count          BIGINT NOT NULL,
    PRIMARY KEY (environment_id, flag_key, hour, variation, error_kind)
);
CREATE INDEX evaluation_hourly_time ON evaluation_hourly (environment_id, hour);

DROP INDEX track_events_name;
CREATE INDEX track_events_unit ON track_events (environment_id, name, context_kind, context_key, at, value);
