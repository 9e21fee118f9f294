//! History: every configuration a flag had in an environment and every version of a segment,
//! recorded in the transaction of the change that produced it; and the writes that restore
//! one (a flag, a segment, or a whole environment as of a time).
//!
//! A version row holds the resource as it was after the change, keyed by the version that
//! change gave it, so version `n` of the history is exactly what SDKs were served at version
//! `n`. Recording inserts "the current state, unless already recorded": a transaction that
//! touches a flag twice records it once, and recording every environment after a
//! project-level change adds a row only where the version moved.

use serde::Serialize;

use super::db::{Row, Tx, args};
use super::events::env_id;
use super::flags::variation_from_db;
use super::projects::{fetch_env, page_from_rows};
use super::segments::{fetch_segment, upsert_segment};
use super::{
    AuditRecord, BumpedEnv, FlagConfiguration, FlagModel, Millis, Page, PageRequest, ResourceKind,
    Result, SegmentInput, SegmentModel, Storage, ValueKind, bump_env, from_text, now_millis,
    parsed_column,
};
use serde_json::{Value, json};

/// Which flag configurations [`record_flags`] records.
pub(super) enum FlagsToRecord<'a> {
    /// One flag, in every environment of its project.
    Everywhere { flag_id: i64 },
    /// One flag, by key, in one environment.
    InEnvironment { env_id: i64, key: &'a str },
    /// Every flag of one environment.
    Environment { env_id: i64 },
}

/// Who made a change, which change, and when: what each recorded version is labelled with.
#[derive(Debug, Clone, Copy)]
pub(super) struct Stamp<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub at: Millis,
}

impl<'a> Stamp<'a> {
    pub(super) fn new(actor: &'a str, action: &'a str, at: Millis) -> Self {
        Stamp { actor, action, at }
    }

    /// The audit entry of this change to the `kind` resource `key` of an environment.
    pub(super) fn entry(
        self,
        kind: ResourceKind,
        key: &'a str,
        project: &'a str,
        env: &'a str,
    ) -> Entry<'a> {
        Entry {
            stamp: self,
            kind,
            key,
            project,
            env,
        }
    }
}

/// An audit entry about a resource of an environment, written with what it was before and
/// after the change (see [`Stamp::entry`]).
pub(super) struct Entry<'a> {
    stamp: Stamp<'a>,
    kind: ResourceKind,
    key: &'a str,
    project: &'a str,
    env: &'a str,
}

impl Entry<'_> {
    pub(super) async fn write<T: Serialize>(
        self,
        tx: &mut Tx,
        before: Option<&T>,
        after: Option<&T>,
    ) -> Result<()> {
        AuditRecord::new(
            self.stamp.actor,
            self.stamp.action,
            self.kind,
            self.key,
            self.stamp.at,
        )
        .scope(Some(self.project), Some(self.env))
        .change(
            before.and_then(super::to_audit),
            after.and_then(super::to_audit),
        )
        .write(tx)
        .await
    }
}

const RECORD_FLAGS: &str = "INSERT INTO flag_versions (environment_id, flag_id, version, \
     recorded_at, actor, action, variations, client_side, archived, is_on, off_variation, \
     targets, rules, fallthrough, prerequisites, salt) \
     SELECT c.environment_id, c.flag_id, c.version, $1, $2, $3, f.variations, f.client_side, \
     f.archived, c.is_on, c.off_variation, c.targets, c.rules, c.fallthrough, c.prerequisites, \
     c.salt FROM flag_configs c JOIN flags f ON f.id = c.flag_id WHERE ";

/// Records the current configurations of `which` flags as versions (those not recorded yet).
pub(super) async fn record_flags(
    tx: &mut Tx,
    which: FlagsToRecord<'_>,
    stamp: Stamp<'_>,
) -> Result<()> {
    // SQLite needs a WHERE in an INSERT … SELECT that carries an ON CONFLICT clause.
    let on_conflict = " ON CONFLICT (environment_id, flag_id, version) DO NOTHING";
    let base = args![stamp.at, stamp.actor, stamp.action];
    match which {
        FlagsToRecord::Everywhere { flag_id } => {
            let mut args = base;
            args.push(flag_id.into());
            tx.execute(&format!("{RECORD_FLAGS}c.flag_id = $4{on_conflict}"), args)
                .await?;
        }
        FlagsToRecord::InEnvironment { env_id, key } => {
            let mut args = base;
            args.push(env_id.into());
            args.push(key.into());
            tx.execute(
                &format!("{RECORD_FLAGS}c.environment_id = $4 AND f.key = $5{on_conflict}"),
                args,
            )
            .await?;
        }
        FlagsToRecord::Environment { env_id } => {
            let mut args = base;
            args.push(env_id.into());
            tx.execute(
                &format!("{RECORD_FLAGS}c.environment_id = $4{on_conflict}"),
                args,
            )
            .await?;
        }
    }
    Ok(())
}

/// Records the current version of segment `key` of an environment (unless recorded).
pub(super) async fn record_segment(
    tx: &mut Tx,
    env_id: i64,
    key: &str,
    stamp: Stamp<'_>,
) -> Result<()> {
    tx.execute(
        "INSERT INTO segment_versions (segment_id, version, recorded_at, actor, action, name, \
         description, included, excluded, rules) \
         SELECT id, version, $1, $2, $3, name, description, included, excluded, rules \
         FROM segments WHERE environment_id = $4 AND key = $5 \
         ON CONFLICT (segment_id, version) DO NOTHING",
        args![stamp.at, stamp.actor, stamp.action, env_id, key],
    )
    .await?;
    Ok(())
}

/// One recorded configuration of a flag in an environment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlagVersion {
    pub project_key: String,
    pub environment_key: String,
    pub flag_key: String,
    /// The flag's version in the environment after the change that recorded this.
    pub version: i64,
    pub recorded_at: Millis,
    /// Who made the change (empty for what existed when history began).
    pub actor: String,
    /// The audit log's name of the change (`flag_config.update`, `flag.archive`, …).
    pub action: String,
    pub kind: ValueKind,
    pub variations: Vec<Value>,
    pub client_side: bool,
    pub archived: bool,
    pub configuration: FlagConfiguration,
}

impl FlagVersion {
    /// The flag as SDKs were served it at this version (SCHEMA.md "Flag").
    pub fn model(&self) -> FlagModel {
        FlagModel {
            key: self.flag_key.clone(),
            kind: self.kind,
            variations: self.variations.clone(),
            on: self.configuration.on,
            off_variation: self.configuration.off_variation,
            targets: self.configuration.targets.clone(),
            rules: self.configuration.rules.clone(),
            fallthrough: self.configuration.fallthrough.clone(),
            prerequisites: self.configuration.prerequisites.clone(),
            salt: self.configuration.salt.clone(),
            version: u64::try_from(self.version).unwrap_or(0),
            client_side: self.client_side,
        }
    }
}

/// One recorded version of a segment.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentVersion {
    pub project_key: String,
    pub environment_key: String,
    pub version: i64,
    pub recorded_at: Millis,
    pub actor: String,
    pub action: String,
    /// The segment's fields at this version (`segment.key` names it).
    pub segment: SegmentInput,
}

impl SegmentVersion {
    /// The segment as SDKs were served it at this version (SCHEMA.md "Segment").
    pub fn model(&self) -> SegmentModel {
        self.segment.model(self.version)
    }
}

/// Which version of a resource to read: by number, or the one in force at a time (the newest
/// recorded at or before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionAt {
    Number(i64),
    Time(Millis),
}

impl VersionAt {
    fn describe(self, key: &str) -> String {
        match self {
            VersionAt::Number(n) => format!("{key}@{n}"),
            VersionAt::Time(at) => format!("{key} as of {at} ms"),
        }
    }
}

/// What restoring an environment as of a time would change (see
/// [`Storage::environment_as_of`]), and what it cannot restore.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvironmentAsOf {
    pub project_key: String,
    pub environment_key: String,
    /// The time restored.
    pub at: Millis,
    /// The environment's version when this was read: restoring refuses to run on another.
    pub version: i64,
    /// Flags whose configuration differs from the one in force at `at`, with that one.
    pub flags: Vec<FlagVersion>,
    /// Segments that differ from their version in force at `at`, with that version.
    pub segments: Vec<SegmentVersion>,
    /// Resources left as they are, and why.
    pub skipped: Vec<Skipped>,
}

impl EnvironmentAsOf {
    /// Whether restoring would change nothing.
    pub fn is_empty(&self) -> bool {
        self.flags.is_empty() && self.segments.is_empty()
    }
}

/// A resource an environment rollback leaves as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub kind: ResourceKind,
    pub key: String,
    pub reason: String,
}

const FLAG_VERSION_COLUMNS: &str = "p.key, e.key, f.key, v.version, v.recorded_at, v.actor, \
     v.action, f.kind, v.variations, v.client_side, v.archived, v.is_on, v.off_variation, \
     v.targets, v.rules, v.fallthrough, v.prerequisites, v.salt";

const FLAG_VERSION_FROM: &str = "flag_versions v JOIN flags f ON f.id = v.flag_id \
     JOIN environments e ON e.id = v.environment_id JOIN projects p ON p.id = e.project_id";

fn flag_version_from_row(row: &Row) -> Result<FlagVersion> {
    Ok(FlagVersion {
        project_key: row.get(0)?,
        environment_key: row.get(1)?,
        flag_key: row.get(2)?,
        version: row.get(3)?,
        recorded_at: row.get(4)?,
        actor: row.get(5)?,
        action: row.get(6)?,
        kind: parsed_column(row, 7, "flag kind", ValueKind::from_name)?,
        variations: from_text(&row.get::<String>(8)?, "flag version variations")?,
        client_side: row.get(9)?,
        archived: row.get(10)?,
        configuration: FlagConfiguration {
            on: row.get(11)?,
            off_variation: variation_from_db(row.get(12)?)?.map(|v| v as usize),
            targets: from_text(&row.get::<String>(13)?, "flag version targets")?,
            rules: from_text(&row.get::<String>(14)?, "flag version rules")?,
            fallthrough: from_text(&row.get::<String>(15)?, "flag version fallthrough")?,
            prerequisites: from_text(&row.get::<String>(16)?, "flag version prerequisites")?,
            salt: row.get(17)?,
        },
    })
}

const SEGMENT_VERSION_COLUMNS: &str = "p.key, e.key, s.key, v.version, v.recorded_at, v.actor, \
     v.action, v.name, v.description, v.included, v.excluded, v.rules";

const SEGMENT_VERSION_FROM: &str = "segment_versions v JOIN segments s ON s.id = v.segment_id \
     JOIN environments e ON e.id = s.environment_id JOIN projects p ON p.id = e.project_id";

fn segment_version_from_row(row: &Row) -> Result<SegmentVersion> {
    Ok(SegmentVersion {
        project_key: row.get(0)?,
        environment_key: row.get(1)?,
        version: row.get(3)?,
        recorded_at: row.get(4)?,
        actor: row.get(5)?,
        action: row.get(6)?,
        segment: SegmentInput {
            key: row.get(2)?,
            name: row.get(7)?,
            description: row.get(8)?,
            included: from_text(&row.get::<String>(9)?, "segment version included")?,
            excluded: from_text(&row.get::<String>(10)?, "segment version excluded")?,
            rules: from_text(&row.get::<String>(11)?, "segment version rules")?,
        },
    })
}

/// One kind of resource's history, and how to read it.
struct History<T> {
    columns: &'static str,
    from: &'static str,
    /// The column holding the resource's key.
    key: &'static str,
    /// The column holding its environment's id.
    environment: &'static str,
    read: fn(&Row) -> Result<T>,
}

const FLAG_HISTORY: History<FlagVersion> = History {
    columns: FLAG_VERSION_COLUMNS,
    from: FLAG_VERSION_FROM,
    key: "f.key",
    environment: "v.environment_id",
    read: flag_version_from_row,
};

const SEGMENT_HISTORY: History<SegmentVersion> = History {
    columns: SEGMENT_VERSION_COLUMNS,
    from: SEGMENT_VERSION_FROM,
    key: "s.key",
    environment: "s.environment_id",
    read: segment_version_from_row,
};

impl<T> History<T> {
    /// A page of the resource's versions, newest first.
    async fn page(&self, tx: &mut Tx, env_id: i64, key: &str, page: &PageRequest) -> Result<Page<T>>
    where
        T: HasVersion,
    {
        let limit = page.effective_limit();
        let below = page.number_cursor(i64::MAX)?;
        let sql = format!(
            "SELECT {} FROM {} WHERE {} = $1 AND {} = $2 AND v.version < $3 \
             ORDER BY v.version DESC LIMIT $4",
            self.columns, self.from, self.environment, self.key
        );
        let rows = tx
            .fetch_all(&sql, args![env_id, key, below, limit + 1])
            .await?;
        page_from_rows(&rows, self.read, limit, |v| v.version().to_string())
    }

    /// The version picked by `at`, if recorded.
    async fn one(&self, tx: &mut Tx, env_id: i64, key: &str, at: VersionAt) -> Result<Option<T>> {
        let (condition, value) = match at {
            VersionAt::Number(n) => ("v.version = $3", n),
            VersionAt::Time(t) => ("v.recorded_at <= $3", t),
        };
        let sql = format!(
            "SELECT {} FROM {} WHERE {} = $1 AND {} = $2 AND {condition} \
             ORDER BY v.version DESC LIMIT 1",
            self.columns, self.from, self.environment, self.key
        );
        tx.fetch_optional(&sql, args![env_id, key, value])
            .await?
            .map(|row| (self.read)(&row))
            .transpose()
    }
}

/// A recorded version's number.
trait HasVersion {
    fn version(&self) -> i64;
}

impl HasVersion for FlagVersion {
    fn version(&self) -> i64 {
        self.version
    }
}

impl HasVersion for SegmentVersion {
    fn version(&self) -> i64 {
        self.version
    }
}

impl Storage {
    /// Audits a write to one environment (`entry`, with the resource before and after it;
    /// absent for a creation or a deletion) in the write's transaction, commits, then tells
    /// subscribers about the environment it bumped.
    pub(super) async fn commit_env_write<T: Serialize>(
        &self,
        mut tx: Tx,
        entry: Entry<'_>,
        before: Option<&T>,
        after: Option<&T>,
        bumped: &BumpedEnv,
    ) -> Result<()> {
        let project = entry.project;
        entry.write(&mut tx, before, after).await?;
        self.commit_and_notify(tx, project, std::slice::from_ref(bumped))
            .await
    }

    /// Lists the recorded configurations of a flag in an environment, newest first.
    pub async fn list_flag_versions(
        &self,
        project: &str,
        env: &str,
        key: &str,
        page: &PageRequest,
    ) -> Result<Page<FlagVersion>> {
        let mut tx = self.read().await?;
        let env_id = env_id(&mut tx, project, env).await?;
        super::flags::fetch_config(&mut tx, env_id, key).await?;
        FLAG_HISTORY.page(&mut tx, env_id, key, page).await
    }

    /// Returns one recorded configuration of a flag in an environment.
    pub async fn flag_version(
        &self,
        project: &str,
        env: &str,
        key: &str,
        at: VersionAt,
    ) -> Result<FlagVersion> {
        let mut tx = self.read().await?;
        let env_id = env_id(&mut tx, project, env).await?;
        match FLAG_HISTORY.one(&mut tx, env_id, key, at).await? {
            Some(version) => Ok(version),
            None => {
                super::flags::fetch_config(&mut tx, env_id, key).await?;
                Err(super::not_found(ResourceKind::Version, &at.describe(key)))
            }
        }
    }

    /// Lists the recorded versions of a segment, newest first.
    pub async fn list_segment_versions(
        &self,
        project: &str,
        env: &str,
        key: &str,
        page: &PageRequest,
    ) -> Result<Page<SegmentVersion>> {
        let mut tx = self.read().await?;
        let env_id = env_id(&mut tx, project, env).await?;
        fetch_segment(&mut tx, env_id, key).await?;
        SEGMENT_HISTORY.page(&mut tx, env_id, key, page).await
    }

    /// Returns one recorded version of a segment.
    pub async fn segment_version(
        &self,
        project: &str,
        env: &str,
        key: &str,
        at: VersionAt,
    ) -> Result<SegmentVersion> {
        let mut tx = self.read().await?;
        let env_id = env_id(&mut tx, project, env).await?;
        match SEGMENT_HISTORY.one(&mut tx, env_id, key, at).await? {
            Some(version) => Ok(version),
            None => {
                fetch_segment(&mut tx, env_id, key).await?;
                Err(super::not_found(ResourceKind::Version, &at.describe(key)))
            }
        }
    }

    /// Restores a segment to a recorded version: a new version with its fields. Bumps the
    /// segment's and the environment's versions.
    pub async fn rollback_segment(
        &self,
        actor: &str,
        project: &str,
        env: &str,
        expected_version: i64,
        target: &SegmentVersion,
    ) -> Result<super::Segment> {
        self.replace_segment(
            actor,
            "segment.rollback",
            project,
            env,
            expected_version,
            &target.segment,
        )
        .await
    }

    /// What restoring an environment's flag configurations and segments as they were at
    /// `at` would change. Flags and segments created after `at`, flags archived since, and
    /// flags whose variations (shared by every environment) changed since are skipped:
    /// restoring their configuration alone would not serve what was served at `at`.
    pub async fn environment_as_of(
        &self,
        project: &str,
        env: &str,
        at: Millis,
    ) -> Result<EnvironmentAsOf> {
        let mut tx = self.read().await?;
        let environment = fetch_env(&mut tx, project, env).await?;
        let env_id = env_id(&mut tx, project, env).await?;
        let mut plan = EnvironmentAsOf {
            project_key: project.to_owned(),
            environment_key: env.to_owned(),
            at,
            version: environment.version,
            flags: Vec::new(),
            segments: Vec::new(),
            skipped: Vec::new(),
        };

        // Each flag's newest version at or before `at`, next to its current state.
        let sql = format!(
            "SELECT {FLAG_VERSION_COLUMNS}, c.version, f.variations, f.archived \
             FROM flag_configs c JOIN flags f ON f.id = c.flag_id \
             JOIN environments e ON e.id = c.environment_id JOIN projects p ON p.id = e.project_id \
             LEFT JOIN flag_versions v ON v.environment_id = c.environment_id \
             AND v.flag_id = c.flag_id AND v.version = (SELECT MAX(w.version) FROM flag_versions w \
             WHERE w.environment_id = c.environment_id AND w.flag_id = c.flag_id \
             AND w.recorded_at <= $2) \
             WHERE c.environment_id = $1 ORDER BY f.key"
        );
        for row in tx.fetch_all(&sql, args![env_id, at]).await? {
            let key: String = row.get(2)?;
            let version: Option<i64> = row.get(3)?;
            let current_version: i64 = row.get(18)?;
            let current_variations: Vec<Value> =
                from_text(&row.get::<String>(19)?, "flag variations")?;
            let archived_now: bool = row.get(20)?;
            let Some(version) = version else {
                plan.skipped.push(Skipped {
                    kind: ResourceKind::Flag,
                    key,
                    reason: "created after that time".into(),
                });
                continue;
            };
            if version == current_version {
                continue;
            }
            let then = flag_version_from_row(&row)?;
            if archived_now {
                plan.skipped.push(Skipped {
                    kind: ResourceKind::Flag,
                    key,
                    reason: "archived (restore the flag first)".into(),
                });
            } else if then.variations != current_variations {
                plan.skipped.push(Skipped {
                    kind: ResourceKind::Flag,
                    key,
                    reason: format!(
                        "its variations changed since version {version} (they are shared by \
                         every environment: restore them with a flag update first)"
                    ),
                });
            } else if then.configuration != current_configuration(&mut tx, env_id, &key).await? {
                plan.flags.push(then);
            }
        }

        let sql = format!(
            "SELECT {SEGMENT_VERSION_COLUMNS}, s.version FROM segments s \
             JOIN environments e ON e.id = s.environment_id JOIN projects p ON p.id = e.project_id \
             LEFT JOIN segment_versions v ON v.segment_id = s.id AND v.version = \
             (SELECT MAX(w.version) FROM segment_versions w WHERE w.segment_id = s.id \
             AND w.recorded_at <= $2) \
             WHERE s.environment_id = $1 ORDER BY s.key"
        );
        for row in tx.fetch_all(&sql, args![env_id, at]).await? {
            let key: String = row.get(2)?;
            let version: Option<i64> = row.get(3)?;
            let current_version: i64 = row.get(12)?;
            match version {
                None => plan.skipped.push(Skipped {
                    kind: ResourceKind::Segment,
                    key,
                    reason: "created after that time".into(),
                }),
                Some(version) if version != current_version => {
                    let then = segment_version_from_row(&row)?;
                    let now = fetch_segment(&mut tx, env_id, &key).await?;
                    let same = then.segment.name == now.name
                        && then.segment.description == now.description
                        && then.segment.included == now.included
                        && then.segment.excluded == now.excluded
                        && then.segment.rules == now.rules;
                    if !same {
                        plan.segments.push(then);
                    }
                }
                Some(_) => {}
            }
        }
        Ok(plan)
    }

    /// Restores what [`Storage::environment_as_of`] found, in one transaction: every listed
    /// flag configuration and segment gets a new version holding its content at that time.
    /// Refused (ABORTED) when the environment changed since `plan` was read. Returns the
    /// environment's new version.
    pub async fn rollback_environment(&self, actor: &str, plan: &EnvironmentAsOf) -> Result<i64> {
        let (project, env) = (plan.project_key.as_str(), plan.environment_key.as_str());
        let stamp = Stamp::new(actor, "environment.rollback", now_millis());
        let mut tx = self.write().await?;
        let bumped: BumpedEnv = bump_env(&mut tx, project, env, stamp.at, self.guards()).await?;
        super::check_version(
            ResourceKind::Environment,
            &format!("{project}/{env}"),
            plan.version,
            bumped.version - 1,
        )?;
        let mut restored = Vec::new();
        for flag in &plan.flags {
            let key = flag.flag_key.as_str();
            super::flags::rewrite_config(&mut tx, &bumped, key, &flag.configuration, false, stamp)
                .await?;
            restored.push(json!({ "kind": "flag", "key": key, "from_version": flag.version }));
        }
        for segment in &plan.segments {
            upsert_segment(&mut tx, &bumped, &segment.segment, true, stamp).await?;
            restored.push(json!({
                "kind": "segment", "key": segment.segment.key, "from_version": segment.version
            }));
        }
        let entry = stamp.entry(ResourceKind::Environment, env, project, env);
        let before = json!({ "version": plan.version });
        let after = json!({ "version": bumped.version, "as_of": plan.at, "restored": restored });
        self.commit_env_write(tx, entry, Some(&before), Some(&after), &bumped)
            .await?;
        Ok(bumped.version)
    }
}

/// A flag's current configuration in an environment.
async fn current_configuration(tx: &mut Tx, env_id: i64, key: &str) -> Result<FlagConfiguration> {
    Ok(super::flags::fetch_config(tx, env_id, key)
        .await?
        .0
        .configuration)
}
