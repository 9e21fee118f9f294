-- Progressive rollouts: a flag's fallthrough in one environment moved from a baseline
-- variation to another in steps of percentage and duration, advanced by whichever instance
-- finds a step due first (one transaction moves the step and writes the flag).
CREATE TABLE rollout_ramps (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    environment_id  BIGINT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    flag_id         BIGINT NOT NULL REFERENCES flags (id) ON DELETE CASCADE,
    -- The variation rolled out, and the one every other context keeps.
    variation       BIGINT NOT NULL,
    baseline        BIGINT NOT NULL,
    -- [{"percent": 5.0, "duration_ms": 3600000}, …], the last at 100 percent.
    steps           TEXT   NOT NULL,
    -- running, paused, completed or cancelled.
    state           TEXT   NOT NULL,
    -- The index of the step in force, and when it began.
    step            BIGINT NOT NULL,
    step_started_at BIGINT NOT NULL,
    -- While paused: how long the step in force had left.
    paused_remaining BIGINT,
    created_by      TEXT   NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
-- At most one ramp in progress per flag and environment.
CREATE UNIQUE INDEX rollout_ramps_active ON rollout_ramps (environment_id, flag_id)
    WHERE state IN ('running', 'paused');
CREATE INDEX rollout_ramps_state ON rollout_ramps (state);
