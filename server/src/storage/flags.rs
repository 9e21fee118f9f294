//! Flags (project-level) and their configurations (per environment).

use super::db::{Row, Tx, args};
use super::history::{FlagVersion, FlagsToRecord, Stamp, record_flags};
use super::projects::page_from_rows;
use super::{
    ArchivedFilter, AuditRecord, BumpedEnv, ChangeKind, ChangeOp, Flag, FlagConfig,
    FlagConfiguration, FlagFilter, FlagUpdate, NewFlag, Page, PageRequest, QueryBuilder,
    ResourceKind, Result, Storage, StorageError, ValueKind, bump_all_envs, bump_env, check_version,
    from_text, like_escape, lock_project, log_change, not_found, now_millis, parsed_column,
    project_id, to_audit, to_text,
};

pub(super) const FLAG_COLUMNS: &str = "p.key, f.key, f.kind, f.variations, f.name, f.description, \
     f.tags, f.client_side, f.archived, f.version, f.created_at, f.updated_at";

pub(super) const CONFIG_COLUMNS: &str = "p.key, e.key, f.key, c.is_on, c.off_variation, \
     c.targets, c.rules, c.fallthrough, c.prerequisites, c.salt, c.version, c.updated_at";

/// The FROM clause that goes with [`CONFIG_COLUMNS`].
pub(super) const CONFIG_FROM: &str = "flag_configs c JOIN flags f ON f.id = c.flag_id \
     JOIN environments e ON e.id = c.environment_id JOIN projects p ON p.id = f.project_id";

pub(super) fn flag_from_row(row: &Row) -> Result<Flag> {
    Ok(Flag {
        project_key: row.get(0)?,
        key: row.get(1)?,
        kind: parsed_column(row, 2, "flag kind", ValueKind::from_name)?,
        variations: from_text(&row.get::<String>(3)?, "flag variations")?,
        name: row.get(4)?,
        description: row.get(5)?,
        tags: from_text(&row.get::<String>(6)?, "flag tags")?,
        client_side: row.get(7)?,
        archived: row.get(8)?,
        version: row.get(9)?,
        created_at: row.get(10)?,
        updated_at: row.get(11)?,
    })
}

pub(super) fn config_from_row(row: &Row) -> Result<FlagConfig> {
    config_from_row_at(row, 0)
}

/// Reads [`CONFIG_COLUMNS`] starting at column `b`.
pub(super) fn config_from_row_at(row: &Row, b: usize) -> Result<FlagConfig> {
    Ok(FlagConfig {
        project_key: row.get(b)?,
        environment_key: row.get(b + 1)?,
        flag_key: row.get(b + 2)?,
        configuration: FlagConfiguration {
            on: row.get(b + 3)?,
            off_variation: variation_from_db(row.get(b + 4)?)?.map(|v| v as usize),
            targets: from_text(&row.get::<String>(b + 5)?, "flag targets")?,
            rules: from_text(&row.get::<String>(b + 6)?, "flag rules")?,
            fallthrough: from_text(&row.get::<String>(b + 7)?, "flag fallthrough")?,
            prerequisites: from_text(&row.get::<String>(b + 8)?, "flag prerequisites")?,
            salt: row.get(b + 9)?,
        },
        version: row.get(b + 10)?,
        updated_at: row.get(b + 11)?,
    })
}

pub(super) fn variation_from_db(value: Option<i64>) -> Result<Option<u32>> {
    value
        .map(|v| {
            u32::try_from(v)
                .map_err(|_| StorageError::Corrupt(format!("variation index {v} out of range")))
        })
        .transpose()
}

/// Tags sorted, without duplicates.
fn normalized_tags(tags: &[String]) -> Vec<String> {
    let mut tags = tags.to_vec();
    tags.sort();
    tags.dedup();
    tags
}

/// Returns a flag and its internal id.
pub(super) async fn fetch_flag(tx: &mut Tx, project: &str, key: &str) -> Result<(i64, Flag)> {
    let sql = format!(
        "SELECT {FLAG_COLUMNS}, f.id FROM flags f JOIN projects p ON p.id = f.project_id \
         WHERE p.key = $1 AND f.key = $2"
    );
    match tx.fetch_optional(&sql, args![project, key]).await? {
        Some(row) => Ok((row.get(12)?, flag_from_row(&row)?)),
        None => {
            project_id(tx, project).await?;
            Err(not_found(ResourceKind::Flag, key))
        }
    }
}

/// Returns a flag's configuration in an environment and whether the flag is archived.
pub(super) async fn fetch_config(
    tx: &mut Tx,
    env_id: i64,
    key: &str,
) -> Result<(FlagConfig, bool)> {
    let sql = format!(
        "SELECT {CONFIG_COLUMNS}, f.archived FROM {CONFIG_FROM} \
         WHERE c.environment_id = $1 AND f.key = $2"
    );
    match tx.fetch_optional(&sql, args![env_id, key]).await? {
        Some(row) => Ok((config_from_row(&row)?, row.get(12)?)),
        None => Err(not_found(ResourceKind::Flag, key)),
    }
}

async fn replace_tags(tx: &mut Tx, flag_id: i64, tags: &[String]) -> Result<()> {
    tx.execute("DELETE FROM flag_tags WHERE flag_id = $1", args![flag_id])
        .await?;
    for tag in tags {
        tx.execute(
            "INSERT INTO flag_tags (flag_id, tag) VALUES ($1, $2)",
            args![flag_id, tag],
        )
        .await?;
    }
    Ok(())
}

/// Inserts a project-level flag with a configuration in every environment of the project.
/// The caller bumps the environments and logs the change.
pub(super) async fn insert_flag(
    tx: &mut Tx,
    project_id: i64,
    new: &NewFlag,
    stamp: Stamp<'_>,
) -> Result<i64> {
    let now = stamp.at;
    let tags = normalized_tags(&new.tags);
    let name = if new.name.is_empty() {
        new.key.clone()
    } else {
        new.name.clone()
    };
    let row = tx
        .fetch_optional(
            "INSERT INTO flags (project_id, key, kind, variations, name, description, tags, \
             client_side, archived, default_off_variation, default_fallthrough, version, \
             created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, FALSE, $9, $10, 1, $11, $11) RETURNING id",
            args![
                project_id,
                &new.key,
                new.kind.as_str(),
                to_text(&new.variations),
                name,
                &new.description,
                to_text(&tags),
                new.client_side,
                new.off_variation.and_then(|v| i64::try_from(v).ok()),
                to_text(&new.fallthrough),
                now,
            ],
        )
        .await
        .map_err(StorageError::on_write(ResourceKind::Flag, &new.key))?;
    let flag_id: i64 = match row {
        Some(row) => row.get(0)?,
        None => return Err(StorageError::Corrupt("insert returned no id".into())),
    };
    replace_tags(tx, flag_id, &tags).await?;
    tx.execute(
        "INSERT INTO flag_configs (environment_id, flag_id, is_on, off_variation, targets, \
         rules, fallthrough, prerequisites, salt, version, updated_at) \
         SELECT e.id, d.id, FALSE, d.default_off_variation, '[]', '[]', d.default_fallthrough, \
         '[]', NULL, 1, $3 FROM environments e JOIN flags d ON d.project_id = e.project_id \
         WHERE e.project_id = $1 AND d.id = $2",
        args![project_id, flag_id, now],
    )
    .await?;
    record_flags(tx, FlagsToRecord::Everywhere { flag_id }, stamp).await?;
    Ok(flag_id)
}

/// A flag read for a write, its project locked.
struct LockedFlag {
    project_id: i64,
    flag_id: i64,
    before: Flag,
}

/// Locks `project` and reads its flag `key`; a conflict unless it is at `expected_version`.
async fn lock_flag(
    tx: &mut Tx,
    project: &str,
    key: &str,
    expected_version: i64,
) -> Result<LockedFlag> {
    let project_id = lock_project(tx, project).await?;
    let (flag_id, before) = fetch_flag(tx, project, key).await?;
    check_version(ResourceKind::Flag, key, expected_version, before.version)?;
    Ok(LockedFlag {
        project_id,
        flag_id,
        before,
    })
}

/// Rewrites a flag's project-level fields and bumps its version and its configurations'.
/// The caller bumps the environments and logs the change.
pub(super) async fn rewrite_flag(
    tx: &mut Tx,
    flag_id: i64,
    flag: &Flag,
    stamp: Stamp<'_>,
) -> Result<()> {
    let now = stamp.at;
    let tags = normalized_tags(&flag.tags);
    tx.execute(
        "UPDATE flags SET name = $2, description = $3, variations = $4, tags = $5, \
         client_side = $6, archived = $7, version = version + 1, updated_at = $8 WHERE id = $1",
        args![
            flag_id,
            &flag.name,
            &flag.description,
            to_text(&flag.variations),
            to_text(&tags),
            flag.client_side,
            flag.archived,
            now,
        ],
    )
    .await?;
    replace_tags(tx, flag_id, &tags).await?;
    tx.execute(
        "UPDATE flag_configs SET version = version + 1, updated_at = $2 WHERE flag_id = $1",
        args![flag_id, now],
    )
    .await?;
    record_flags(tx, FlagsToRecord::Everywhere { flag_id }, stamp).await
}

/// Logs a flag change in every one of `envs`.
pub(super) async fn log_flag_everywhere(
    tx: &mut Tx,
    envs: &[BumpedEnv],
    key: &str,
    op: ChangeOp,
) -> Result<()> {
    for env in envs {
        log_change(tx, env, ChangeKind::Flag, key, op).await?;
    }
    Ok(())
}

/// Replaces a flag's configuration in a locked environment; logs the change there and
/// records the new version.
pub(super) async fn rewrite_config(
    tx: &mut Tx,
    env: &BumpedEnv,
    key: &str,
    update: &FlagConfiguration,
    archived: bool,
    stamp: Stamp<'_>,
) -> Result<()> {
    tx.execute(
        "UPDATE flag_configs SET is_on = $3, off_variation = $4, targets = $5, rules = $6, \
         fallthrough = $7, prerequisites = $8, salt = $9, version = version + 1, updated_at = $10 \
         WHERE environment_id = $1 AND flag_id = (SELECT f.id FROM flags f JOIN environments e \
         ON e.project_id = f.project_id WHERE e.id = $1 AND f.key = $2)",
        args![
            env.id,
            key,
            update.on,
            update.off_variation.and_then(|v| i64::try_from(v).ok()),
            to_text(&update.targets),
            to_text(&update.rules),
            to_text(&update.fallthrough),
            to_text(&update.prerequisites),
            update.salt.clone(),
            stamp.at,
        ],
    )
    .await?;
    if !archived {
        log_change(tx, env, ChangeKind::Flag, key, ChangeOp::Upsert).await?;
    }
    record_flags(
        tx,
        FlagsToRecord::InEnvironment {
            env_id: env.id,
            key,
        },
        stamp,
    )
    .await
}

impl Storage {
    /// Creates a flag at version 1, with a configuration at version 1 in every environment
    /// (off, serving `new.off_variation`, falling through to `new.fallthrough`). Bumps
    /// every environment of the project.
    pub async fn create_flag(&self, actor: &str, project: &str, new: &NewFlag) -> Result<Flag> {
        let now = now_millis();
        let stamp = Stamp::new(actor, "flag.create", now);
        let mut tx = self.write().await?;
        let project_id = lock_project(&mut tx, project).await?;
        insert_flag(&mut tx, project_id, new, stamp).await?;
        let envs = bump_all_envs(&mut tx, project, project_id, now, self.guards()).await?;
        log_flag_everywhere(&mut tx, &envs, &new.key, ChangeOp::Upsert).await?;
        let (_, flag) = fetch_flag(&mut tx, project, &new.key).await?;
        AuditRecord::new(actor, "flag.create", ResourceKind::Flag, &flag.key, now)
            .scope(Some(project), None)
            .change(None, to_audit(&flag))
            .write(&mut tx)
            .await?;
        self.commit_and_notify(tx, project, &envs).await?;
        Ok(flag)
    }

    /// Returns a flag's project-level fields.
    pub async fn get_flag(&self, project: &str, key: &str) -> Result<Flag> {
        let mut tx = self.read().await?;
        Ok(fetch_flag(&mut tx, project, key).await?.1)
    }

    /// Lists a project's flags ordered by key, filtered.
    pub async fn list_flags(
        &self,
        project: &str,
        filter: &FlagFilter,
        page: &PageRequest,
    ) -> Result<Page<Flag>> {
        let limit = page.effective_limit();
        let mut tx = self.read().await?;
        let project_id = project_id(&mut tx, project).await?;
        let mut q = QueryBuilder::new(&format!(
            "SELECT {FLAG_COLUMNS} FROM flags f JOIN projects p ON p.id = f.project_id WHERE "
        ));
        let p = q.arg(project_id);
        let c = q.arg(page.cursor.clone().unwrap_or_default());
        q.push(&format!("f.project_id = {p} AND f.key > {c}"));
        match filter.archived {
            ArchivedFilter::Exclude => q.push(" AND f.archived = FALSE"),
            ArchivedFilter::Only => q.push(" AND f.archived = TRUE"),
            ArchivedFilter::Include => {}
        }
        if let Some(kind) = filter.kind {
            let k = q.arg(kind.as_str());
            q.push(&format!(" AND f.kind = {k}"));
        }
        if let Some(text) = filter.query.as_deref().filter(|t| !t.is_empty()) {
            let pattern = q.arg(format!("%{}%", like_escape(&text.to_lowercase())));
            q.push(&format!(
                " AND (LOWER(f.key) LIKE {pattern} ESCAPE '\\' \
                 OR LOWER(f.name) LIKE {pattern} ESCAPE '\\')"
            ));
        }
        for tag in normalized_tags(&filter.tags) {
            let t = q.arg(tag);
            q.push(&format!(
                " AND EXISTS (SELECT 1 FROM flag_tags t WHERE t.flag_id = f.id AND t.tag = {t})"
            ));
        }
        let l = q.arg(limit + 1);
        q.push(&format!(" ORDER BY f.key LIMIT {l}"));
        let rows = tx.fetch_all(&q.sql, q.args).await?;
        page_from_rows(&rows, flag_from_row, limit, |f| f.key.clone())
    }

    /// Replaces a flag's name, description, variations, tags and client-side visibility.
    /// Bumps the flag's version, its version in every environment, and (unless archived)
    /// every environment's version.
    pub async fn update_flag(
        &self,
        actor: &str,
        project: &str,
        key: &str,
        expected_version: i64,
        update: &FlagUpdate,
    ) -> Result<Flag> {
        let mut tx = self.write().await?;
        let locked = lock_flag(&mut tx, project, key, expected_version).await?;
        let changed = Flag {
            name: if update.name.is_empty() {
                key.to_owned()
            } else {
                update.name.clone()
            },
            description: update.description.clone(),
            variations: update.variations.clone(),
            tags: update.tags.clone(),
            client_side: update.client_side,
            ..locked.before.clone()
        };
        let stamp = Stamp::new(actor, "flag.update", now_millis());
        self.rewrite_flag_everywhere(tx, project, locked, &changed, stamp)
            .await
    }

    /// Archives (takes out of every ruleset) or restores a flag. Setting the state it already
    /// has changes nothing.
    pub async fn set_flag_archived(
        &self,
        actor: &str,
        project: &str,
        key: &str,
        expected_version: i64,
        archived: bool,
    ) -> Result<Flag> {
        let mut tx = self.write().await?;
        let locked = lock_flag(&mut tx, project, key, expected_version).await?;
        if locked.before.archived == archived {
            return Ok(locked.before);
        }
        let changed = Flag {
            archived,
            ..locked.before.clone()
        };
        let action = if archived {
            "flag.archive"
        } else {
            "flag.restore"
        };
        let stamp = Stamp::new(actor, action, now_millis());
        self.rewrite_flag_everywhere(tx, project, locked, &changed, stamp)
            .await
    }

    /// Stores `changed` over the `locked` flag: bumps every environment that serves the flag
    /// before or after the change and logs it there (taken out of their rulesets when
    /// archived), audits it as `stamp` and commits. The flag as stored.
    async fn rewrite_flag_everywhere(
        &self,
        mut tx: Tx,
        project: &str,
        locked: LockedFlag,
        changed: &Flag,
        stamp: Stamp<'_>,
    ) -> Result<Flag> {
        let LockedFlag {
            project_id,
            flag_id,
            before,
        } = locked;
        let key = before.key.as_str();
        rewrite_flag(&mut tx, flag_id, changed, stamp).await?;
        let envs = if before.archived && changed.archived {
            Vec::new()
        } else {
            bump_all_envs(&mut tx, project, project_id, stamp.at, self.guards()).await?
        };
        let op = if changed.archived {
            ChangeOp::Delete
        } else {
            ChangeOp::Upsert
        };
        log_flag_everywhere(&mut tx, &envs, key, op).await?;
        let (_, after) = fetch_flag(&mut tx, project, key).await?;
        AuditRecord::new(stamp.actor, stamp.action, ResourceKind::Flag, key, stamp.at)
            .scope(Some(project), None)
            .change(to_audit(&before), to_audit(&after))
            .write(&mut tx)
            .await?;
        self.commit_and_notify(tx, project, &envs).await?;
        Ok(after)
    }

    /// Deletes a flag and its configurations; bumps every environment where it was served.
    pub async fn delete_flag(
        &self,
        actor: &str,
        project: &str,
        key: &str,
        expected_version: i64,
    ) -> Result<()> {
        let now = now_millis();
        let mut tx = self.write().await?;
        let LockedFlag {
            project_id,
            flag_id,
            before,
        } = lock_flag(&mut tx, project, key, expected_version).await?;
        let envs = if before.archived {
            Vec::new()
        } else {
            bump_all_envs(&mut tx, project, project_id, now, self.guards()).await?
        };
        log_flag_everywhere(&mut tx, &envs, key, ChangeOp::Delete).await?;
        tx.execute("DELETE FROM flags WHERE id = $1", args![flag_id])
            .await?;
        AuditRecord::new(actor, "flag.delete", ResourceKind::Flag, key, now)
            .scope(Some(project), None)
            .change(to_audit(&before), None)
            .write(&mut tx)
            .await?;
        self.commit_and_notify(tx, project, &envs).await?;
        Ok(())
    }

    /// Returns a flag's configuration in one environment.
    pub async fn get_flag_config(&self, project: &str, env: &str, key: &str) -> Result<FlagConfig> {
        let mut tx = self.read().await?;
        let sql = format!(
            "SELECT {CONFIG_COLUMNS} FROM {CONFIG_FROM} WHERE p.key = $1 AND e.key = $2 AND f.key = $3"
        );
        match tx.fetch_optional(&sql, args![project, env, key]).await? {
            Some(row) => config_from_row(&row),
            None => {
                super::projects::fetch_env(&mut tx, project, env).await?;
                Err(not_found(ResourceKind::Flag, key))
            }
        }
    }

    /// Returns a flag's configurations, in every environment (ordered by environment key) or
    /// only in those of `envs` when it is not empty.
    pub async fn list_flag_configs(
        &self,
        project: &str,
        key: &str,
        envs: &[String],
    ) -> Result<Vec<FlagConfig>> {
        let mut tx = self.read().await?;
        let (flag_id, _) = fetch_flag(&mut tx, project, key).await?;
        let sql = format!(
            "SELECT {CONFIG_COLUMNS} FROM {CONFIG_FROM} WHERE c.flag_id = $1 ORDER BY e.key"
        );
        let rows = tx.fetch_all(&sql, args![flag_id]).await?;
        let mut configs = rows
            .iter()
            .map(config_from_row)
            .collect::<Result<Vec<_>>>()?;
        if !envs.is_empty() {
            configs.retain(|c| envs.contains(&c.environment_key));
        }
        Ok(configs)
    }

    /// Returns the configurations in one environment of the flags named in `keys` (those
    /// that exist), ordered by flag key: what a flag list shows for an environment.
    pub async fn env_flag_configs(
        &self,
        project: &str,
        env: &str,
        keys: &[String],
    ) -> Result<Vec<FlagConfig>> {
        let mut tx = self.read().await?;
        let environment = super::projects::fetch_env(&mut tx, project, env).await?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut q = QueryBuilder::new(&format!(
            "SELECT {CONFIG_COLUMNS} FROM {CONFIG_FROM} WHERE "
        ));
        let p = q.arg(environment.project_key.as_str());
        let e = q.arg(environment.key.as_str());
        q.push(&format!("p.key = {p} AND e.key = {e} AND f.key IN ("));
        for (i, key) in keys.iter().enumerate() {
            let k = q.arg(key.as_str());
            if i > 0 {
                q.push(", ");
            }
            q.push(&k);
        }
        q.push(") ORDER BY f.key");
        let rows = tx.fetch_all(&q.sql, q.args).await?;
        rows.iter().map(config_from_row).collect()
    }

    /// Replaces a flag's configuration in one environment. Bumps the configuration's and the
    /// environment's versions.
    pub async fn update_flag_config(
        &self,
        actor: &str,
        project: &str,
        env: &str,
        key: &str,
        expected_version: i64,
        update: &FlagConfiguration,
    ) -> Result<FlagConfig> {
        let stamp = Stamp::new(actor, "flag_config.update", now_millis());
        self.write_config(
            stamp,
            project,
            env,
            key,
            expected_version,
            ConfigChange::Replace(update),
        )
        .await
    }

    /// Turns a flag on or off in one environment. Bumps the configuration's and the
    /// environment's versions.
    pub async fn toggle_flag(
        &self,
        actor: &str,
        project: &str,
        env: &str,
        key: &str,
        expected_version: i64,
        on: bool,
    ) -> Result<FlagConfig> {
        let stamp = Stamp::new(actor, "flag_config.toggle", now_millis());
        self.write_config(
            stamp,
            project,
            env,
            key,
            expected_version,
            ConfigChange::Toggle(on),
        )
        .await
    }

    /// Restores a flag's configuration in one environment to a recorded version: a new
    /// version with that configuration. Refused (FAILED_PRECONDITION) when the flag's
    /// variations, which every environment shares, are no longer those of that version:
    /// the configuration alone would then not serve what it served.
    pub async fn rollback_flag(
        &self,
        actor: &str,
        project: &str,
        env: &str,
        expected_version: i64,
        target: &FlagVersion,
    ) -> Result<FlagConfig> {
        let stamp = Stamp::new(actor, "flag_config.rollback", now_millis());
        let key = target.flag_key.as_str();
        self.write_config(
            stamp,
            project,
            env,
            key,
            expected_version,
            ConfigChange::Restore(target),
        )
        .await
    }

    async fn write_config(
        &self,
        stamp: Stamp<'_>,
        project: &str,
        env: &str,
        key: &str,
        expected_version: i64,
        change: ConfigChange<'_>,
    ) -> Result<FlagConfig> {
        let mut tx = self.write().await?;
        let bumped = bump_env(&mut tx, project, env, stamp.at, self.guards()).await?;
        let (before, archived) = fetch_config(&mut tx, bumped.id, key).await?;
        check_version(
            ResourceKind::FlagConfig,
            key,
            expected_version,
            before.version,
        )?;
        let update = match change {
            ConfigChange::Replace(update) => update.clone(),
            ConfigChange::Toggle(on) => FlagConfiguration {
                on,
                ..before.configuration.clone()
            },
            ConfigChange::Restore(target) => {
                let (_, flag) = fetch_flag(&mut tx, project, key).await?;
                if flag.variations != target.variations {
                    return Err(StorageError::FailedPrecondition(format!(
                        "flag `{key}`'s variations changed since version {}; they are shared \
                         by every environment: restore them with a flag update first",
                        target.version
                    )));
                }
                target.configuration.clone()
            }
        };
        rewrite_config(&mut tx, &bumped, key, &update, archived, stamp).await?;
        let (after, _) = fetch_config(&mut tx, bumped.id, key).await?;
        let entry = stamp.entry(ResourceKind::FlagConfig, key, project, env);
        self.commit_env_write(tx, entry, Some(&before), Some(&after), &bumped)
            .await?;
        Ok(after)
    }
}

/// What [`Storage::write_config`] does to a configuration.
enum ConfigChange<'a> {
    Replace(&'a FlagConfiguration),
    Toggle(bool),
    Restore(&'a FlagVersion),
}
