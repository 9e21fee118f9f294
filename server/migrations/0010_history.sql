-- History: every configuration a flag had in an environment, and every version of a segment,
-- kept so that they can be listed, compared and restored. A row is written in the
-- transaction of the change that produced it, holding the resource as it was after that
-- change; its key is the version that change gave the resource. Deleting a flag or a segment
-- deletes its history (archiving a flag keeps it).

CREATE TABLE flag_versions (
    environment_id BIGINT  NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    flag_id        BIGINT  NOT NULL REFERENCES flags (id) ON DELETE CASCADE,
    version        BIGINT  NOT NULL,
    recorded_at    BIGINT  NOT NULL,
    actor          TEXT    NOT NULL,
    action         TEXT    NOT NULL,
    variations     TEXT    NOT NULL,
    client_side    BOOLEAN NOT NULL,
    archived       BOOLEAN NOT NULL,
    is_on          BOOLEAN NOT NULL,
    off_variation  BIGINT,
    targets        TEXT    NOT NULL,
    rules          TEXT    NOT NULL,
    fallthrough    TEXT    NOT NULL,
    prerequisites  TEXT    NOT NULL,
    salt           TEXT,
    PRIMARY KEY (environment_id, flag_id, version)
);
-- Point-in-time reads: the newest version of each flag recorded before a time.
CREATE INDEX flag_versions_recorded ON flag_versions (environment_id, recorded_at);

CREATE TABLE segment_versions (
    segment_id  BIGINT NOT NULL REFERENCES segments (id) ON DELETE CASCADE,
    version     BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL,
    actor       TEXT   NOT NULL,
    action      TEXT   NOT NULL,
    name        TEXT   NOT NULL,
    description TEXT   NOT NULL,
    included    TEXT   NOT NULL,
    excluded    TEXT   NOT NULL,
    rules       TEXT   NOT NULL,
    PRIMARY KEY (segment_id, version)
);

-- What exists when history begins is its first recorded version, at its last change.
INSERT INTO flag_versions (environment_id, flag_id, version, recorded_at, actor, action,
    variations, client_side, archived, is_on, off_variation, targets, rules, fallthrough,
    prerequisites, salt)
SELECT c.environment_id, c.flag_id, c.version, c.updated_at, '', 'history.start',
    f.variations, f.client_side, f.archived, c.is_on, c.off_variation, c.targets, c.rules,
    c.fallthrough, c.prerequisites, c.salt
FROM flag_configs c JOIN flags f ON f.id = c.flag_id;

INSERT INTO segment_versions (segment_id, version, recorded_at, actor, action, name,
    description, included, excluded, rules)
SELECT id, version, updated_at, '', 'history.start', name, description, included, excluded,
    rules
FROM segments;
