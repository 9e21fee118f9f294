-- Vexil storage, initial schema (Postgres).
-- Times are milliseconds since the Unix epoch; rules, targets and the like are the engine's
-- canonical JSON, stored as text.

CREATE TABLE projects (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key         TEXT   NOT NULL UNIQUE,
    name        TEXT   NOT NULL,
    description TEXT   NOT NULL,
    version     BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- `version` is the environment version: bumped in the same transaction as every change to
-- the environment's flags or segments. The change log is complete for versions > log_floor.
CREATE TABLE environments (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id  BIGINT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    key         TEXT   NOT NULL,
    name        TEXT   NOT NULL,
    description TEXT   NOT NULL,
    version     BIGINT NOT NULL,
    log_floor   BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (project_id, key)
);

CREATE TABLE flags (
    id                   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id           BIGINT  NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    key                  TEXT    NOT NULL,
    kind                 TEXT    NOT NULL,
    variations           TEXT    NOT NULL,
    name                 TEXT    NOT NULL,
    description          TEXT    NOT NULL,
    tags                 TEXT    NOT NULL,
    client_side          BOOLEAN NOT NULL,
    archived             BOOLEAN NOT NULL,
    default_off_variation BIGINT,
    default_fallthrough  TEXT    NOT NULL,
    version              BIGINT  NOT NULL,
    created_at           BIGINT  NOT NULL,
    updated_at           BIGINT  NOT NULL,
    UNIQUE (project_id, key)
);

CREATE TABLE flag_tags (
    flag_id BIGINT NOT NULL REFERENCES flags (id) ON DELETE CASCADE,
    tag     TEXT   NOT NULL,
    PRIMARY KEY (flag_id, tag)
);
CREATE INDEX flag_tags_tag ON flag_tags (tag);

CREATE TABLE flag_configs (
    environment_id BIGINT  NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    flag_id        BIGINT  NOT NULL REFERENCES flags (id) ON DELETE CASCADE,
    is_on          BOOLEAN NOT NULL,
    off_variation  BIGINT,
    targets        TEXT    NOT NULL,
    rules          TEXT    NOT NULL,
    fallthrough    TEXT    NOT NULL,
    prerequisites  TEXT    NOT NULL,
    salt           TEXT,
    version        BIGINT  NOT NULL,
    updated_at     BIGINT  NOT NULL,
    PRIMARY KEY (environment_id, flag_id)
);
CREATE INDEX flag_configs_flag ON flag_configs (flag_id);

CREATE TABLE segments (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    environment_id BIGINT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    key            TEXT   NOT NULL,
    name           TEXT   NOT NULL,
    description    TEXT   NOT NULL,
    included       TEXT   NOT NULL,
    excluded       TEXT   NOT NULL,
    rules          TEXT   NOT NULL,
    version        BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    UNIQUE (environment_id, key)
);

-- One row per resource changed at an environment version: what streaming sync sends.
CREATE TABLE env_changes (
    environment_id BIGINT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    version        BIGINT NOT NULL,
    resource_kind  TEXT   NOT NULL,
    resource_key   TEXT   NOT NULL,
    op             TEXT   NOT NULL,
    PRIMARY KEY (environment_id, version, resource_kind, resource_key)
);

CREATE TABLE sdk_keys (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    environment_id BIGINT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    kind           TEXT   NOT NULL,
    name           TEXT   NOT NULL,
    prefix         TEXT   NOT NULL,
    key_hash       TEXT   NOT NULL UNIQUE,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT,
    revoked_at     BIGINT
);
CREATE INDEX sdk_keys_environment ON sdk_keys (environment_id);

CREATE TABLE admin_tokens (
    id          TEXT   PRIMARY KEY,
    principal   TEXT   NOT NULL,
    description TEXT   NOT NULL,
    token_hash  TEXT   NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT,
    revoked_at  BIGINT
);

-- project_key '*' grants the role on every project.
CREATE TABLE admin_token_roles (
    token_id    TEXT NOT NULL REFERENCES admin_tokens (id) ON DELETE CASCADE,
    project_key TEXT NOT NULL,
    role        TEXT NOT NULL,
    PRIMARY KEY (token_id, project_key)
);

CREATE TABLE audit_log (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at              BIGINT NOT NULL,
    actor           TEXT   NOT NULL,
    action          TEXT   NOT NULL,
    resource_kind   TEXT   NOT NULL,
    resource_key    TEXT   NOT NULL,
    project_key     TEXT,
    environment_key TEXT,
    before_json     TEXT,
    after_json      TEXT
);
CREATE INDEX audit_log_resource ON audit_log (resource_kind, resource_key, id);
CREATE INDEX audit_log_actor ON audit_log (actor, id);
CREATE INDEX audit_log_project ON audit_log (project_key, id);
CREATE INDEX audit_log_at ON audit_log (at);
