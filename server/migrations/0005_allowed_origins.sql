-- The web origins whose pages may call the SDK-facing services with an environment's client
-- keys: a JSON array of strings; empty allows this machine's pages only.
ALTER TABLE environments ADD COLUMN allowed_origins TEXT NOT NULL DEFAULT '[]';
