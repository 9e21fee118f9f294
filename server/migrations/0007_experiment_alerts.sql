-- Alerts raised on running experiments: a guardrail that regressed, the primary metric's
-- always-valid test crossing its boundary, a sample-ratio mismatch. One row per condition
-- (experiment, kind, metric, variation), inserted if absent, so that however many instances
-- watch the experiments each condition is audited, counted and acted on once.
CREATE TABLE experiment_alerts (
    experiment_id BIGINT NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
    kind          TEXT   NOT NULL,
    metric_key    TEXT   NOT NULL,
    variation     BIGINT NOT NULL,
    message       TEXT   NOT NULL,
    raised_at     BIGINT NOT NULL,
    PRIMARY KEY (experiment_id, kind, metric_key, variation)
);
