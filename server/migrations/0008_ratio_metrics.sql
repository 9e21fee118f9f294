-- Ratio metrics (kind `ratio`): Σ over contexts of the metric event's values divided by Σ of
-- the denominator event's (an event without a value counts 1), such as revenue per session.
-- Empty for every other kind.
ALTER TABLE metrics ADD COLUMN denominator_event_name TEXT NOT NULL DEFAULT '';
