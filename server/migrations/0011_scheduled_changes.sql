-- Scheduled changes: a write of a flag's configuration in an environment, applied at a time
-- by whichever instance finds it due first. Applying one is a single transaction that
-- writes the configuration and moves the row out of `pending`, so it is applied once or
-- not at all, whatever instance or crash is involved.
CREATE TABLE scheduled_changes (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    environment_id  BIGINT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    flag_id         BIGINT NOT NULL REFERENCES flags (id) ON DELETE CASCADE,
    run_at          BIGINT NOT NULL,
    -- {"on": true} to turn the flag on or off, or {"configuration": {...}} to replace its
    -- configuration (the engine's canonical JSON).
    edit            TEXT   NOT NULL,
    comment         TEXT   NOT NULL,
    created_by      TEXT   NOT NULL,
    created_at      BIGINT NOT NULL,
    -- pending, applied, failed or cancelled.
    state           TEXT   NOT NULL,
    finished_at     BIGINT,
    -- The flag's version the change wrote, once applied.
    applied_version BIGINT,
    -- Why it failed, or who cancelled it.
    outcome         TEXT   NOT NULL
);
CREATE INDEX scheduled_changes_due ON scheduled_changes (state, run_at);
CREATE INDEX scheduled_changes_flag ON scheduled_changes (environment_id, flag_id);
