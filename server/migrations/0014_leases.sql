-- Leases: work that one instance of a fleet does for all of them (the watch of running
-- experiments). The holder renews its lease each time it does the work; another instance
-- takes it over only once it has expired, so the work moves only when its holder stops.
CREATE TABLE leases (
    name       TEXT   PRIMARY KEY,
    holder     TEXT   NOT NULL,
    expires_at BIGINT NOT NULL
);
