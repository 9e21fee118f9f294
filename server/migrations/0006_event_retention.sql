-- Retention of raw events per environment, and erasure of one context's events.
--
-- event_retention_days: how long raw exposures, track events and evaluation summaries are
-- kept (0: forever). events_purged_before: the start of the hour before which raw events
-- may have been deleted; the compactor keeps the roll-up rows of earlier hours as they are
-- instead of rebuilding them from raw events that are gone.
ALTER TABLE environments ADD COLUMN event_retention_days BIGINT NOT NULL DEFAULT 0;
ALTER TABLE environments ADD COLUMN events_purged_before BIGINT NOT NULL DEFAULT 0;

-- Deleting by age without scanning every event of the environment.
CREATE INDEX exposures_age ON exposures (environment_id, at);
CREATE INDEX track_events_age ON track_events (environment_id, at);
CREATE INDEX evaluation_summaries_age ON evaluation_summaries (environment_id, window_end);
CREATE INDEX event_batches_age ON event_batches (environment_id, received_at);

-- Finding one context's exposures (track events have track_events_context already).
CREATE INDEX exposures_context ON exposures (environment_id, context_kind, context_key);
