-- Quantile metrics (kind `quantile`): the level p of the p-quantile across contexts of each
-- context's mean value, strictly between 0 and 1 (0.9 for p90). 0 for every other kind.
ALTER TABLE metrics ADD COLUMN quantile DOUBLE PRECISION NOT NULL DEFAULT 0;
