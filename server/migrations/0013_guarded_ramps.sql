-- Guarded rollouts: a ramp may name guardrail metrics, compared between the contexts it
-- exposed to the new variation and those still on the baseline, at every step and in
-- between; a significant regression rolls the flag back to the baseline.
-- {"metrics": [{"metric_key": …, "direction": …}], "alpha": 0.05}, or null when unguarded.
ALTER TABLE rollout_ramps ADD COLUMN guard TEXT;
-- When an instance last compared the guardrails (or the ramp started).
ALTER TABLE rollout_ramps ADD COLUMN guard_checked_at BIGINT;
-- Why the guard rolled the ramp back; empty otherwise.
ALTER TABLE rollout_ramps ADD COLUMN rollback_reason TEXT NOT NULL DEFAULT '';
