-- Analytics events published by SDKs through EventService.Publish (Postgres).
--
-- One row per event in a table per event type, with typed columns, rather than one JSON
-- document per batch: experiment analytics filter and aggregate by environment, flag or
-- experiment, event name and time, which plain columns and B-tree indexes answer without
-- unpacking JSON, identically on both engines. Times are milliseconds since the Unix epoch.
--
-- Contexts are kept whole as the engine's canonical JSON (`context`) plus two columns to
-- group and join by: `context_kind` is the context's kind (`multi` for a multi-kind
-- context), `context_key` its key; for a multi-kind context, its `kind:key` pairs sorted by
-- kind and separated by a space, with `%` and space in keys written `%25` and `%20` (kinds
-- cannot contain either), so that distinct contexts never share a `context_key`.

-- One row per batch received; (environment_id, batch_id) makes a retried batch a no-op.
CREATE TABLE event_batches (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    environment_id BIGINT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    batch_id       TEXT   NOT NULL,
    sdk_name       TEXT   NOT NULL,
    sdk_version    TEXT   NOT NULL,
    received_at    BIGINT NOT NULL,
    -- Events accepted from the batch (what a retry is answered with).
    accepted       BIGINT NOT NULL,
    UNIQUE (environment_id, batch_id)
);

CREATE TABLE exposures (
    id             BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    environment_id BIGINT  NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    batch_ref      BIGINT  NOT NULL REFERENCES event_batches (id) ON DELETE CASCADE,
    at             BIGINT  NOT NULL,
    flag_key       TEXT    NOT NULL,
    flag_version   BIGINT  NOT NULL,
    experiment_key TEXT    NOT NULL,
    variation      BIGINT  NOT NULL,
    in_experiment  BOOLEAN NOT NULL,
    context_kind   TEXT    NOT NULL,
    context_key    TEXT    NOT NULL,
    context        TEXT    NOT NULL
);
CREATE INDEX exposures_experiment ON exposures (environment_id, experiment_key, at);
CREATE INDEX exposures_flag ON exposures (environment_id, flag_key, at);
CREATE INDEX exposures_batch ON exposures (batch_ref);

-- `value` is set for value metrics, NULL for conversions; `data` is a JSON object or NULL.
CREATE TABLE track_events (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    environment_id BIGINT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    batch_ref      BIGINT NOT NULL REFERENCES event_batches (id) ON DELETE CASCADE,
    at             BIGINT NOT NULL,
    name           TEXT   NOT NULL,
    value          DOUBLE PRECISION,
    data           TEXT,
    context_kind   TEXT   NOT NULL,
    context_key    TEXT   NOT NULL,
    context        TEXT   NOT NULL
);
CREATE INDEX track_events_name ON track_events (environment_id, name, at);
CREATE INDEX track_events_batch ON track_events (batch_ref);

-- A summary is identified by its batch and its position in it.
CREATE TABLE evaluation_summaries (
    batch_ref      BIGINT NOT NULL REFERENCES event_batches (id) ON DELETE CASCADE,
    position       BIGINT NOT NULL,
    environment_id BIGINT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    flag_key       TEXT   NOT NULL,
    window_start   BIGINT NOT NULL,
    window_end     BIGINT NOT NULL,
    PRIMARY KEY (batch_ref, position)
);
CREATE INDEX evaluation_summaries_flag ON evaluation_summaries (environment_id, flag_key, window_start);

-- The counters repeat their summary's environment, flag and window so that totals per
-- flag, version and variation over time come from this table and its index alone.
-- `variation` is NULL when the default was served; `error_kind` (`flag_not_found`,
-- `wrong_type`, `malformed_flag`, `invalid_context`, `client_not_ready`) NULL when none.
CREATE TABLE evaluation_counters (
    batch_ref      BIGINT NOT NULL,
    position       BIGINT NOT NULL,
    environment_id BIGINT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    flag_key       TEXT   NOT NULL,
    window_start   BIGINT NOT NULL,
    window_end     BIGINT NOT NULL,
    flag_version   BIGINT NOT NULL,
    variation      BIGINT,
    error_kind     TEXT,
    count          BIGINT NOT NULL,
    FOREIGN KEY (batch_ref, position) REFERENCES evaluation_summaries (batch_ref, position)
        ON DELETE CASCADE
);
CREATE INDEX evaluation_counters_flag ON evaluation_counters (environment_id, flag_key, window_start);
CREATE INDEX evaluation_counters_summary ON evaluation_counters (batch_ref, position);
