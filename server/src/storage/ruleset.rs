//! An environment's whole state as the engine's ruleset JSON, its change log, and import.

use std::collections::{BTreeMap, HashSet};

use serde_json::Value;

use super::db::{Row, Tx, args};
use super::flags::{
    CONFIG_COLUMNS, CONFIG_FROM, FLAG_COLUMNS, config_from_row_at, fetch_config, fetch_flag,
    flag_from_row, insert_flag, log_flag_everywhere, rewrite_config, rewrite_flag,
};
use super::history::Stamp;
use super::replica::on_replica;
use super::segments::{
    SEGMENT_COLUMNS, SEGMENT_FROM, canonical_segment, segment_from_row, upsert_segment,
};
use super::{
    AuditRecord, BumpedEnv, Change, ChangeKind, ChangeOp, ChangesSince, FlagModel, ImportSummary,
    Millis, NewFlag, ResourceKind, Result, RulesetData, RulesetPatch, SegmentInput, SegmentModel,
    Serve, Storage, StorageError, bump_env, check_version, lock_project, not_found, now_millis,
    to_audit,
};

/// An environment's id, version and log floor, read in the current transaction.
struct EnvState {
    id: i64,
    version: i64,
    log_floor: i64,
}

async fn env_state(tx: &mut Tx, project: &str, env: &str) -> Result<EnvState> {
    let row = tx
        .fetch_optional(
            "SELECT e.id, e.version, e.log_floor FROM environments e \
             JOIN projects p ON p.id = e.project_id WHERE p.key = $1 AND e.key = $2",
            args![project, env],
        )
        .await?;
    match row {
        Some(row) => Ok(EnvState {
            id: row.get(0)?,
            version: row.get(1)?,
            log_floor: row.get(2)?,
        }),
        None => {
            super::project_id(tx, project).await?;
            Err(not_found(
                ResourceKind::Environment,
                &format!("{project}/{env}"),
            ))
        }
    }
}

/// The rows `select` reads for the environment `env_id` (its `$1`), ordered by
/// `key_column`; only those whose key is one of `keys` when given.
async fn rows_by_key(
    tx: &mut Tx,
    select: String,
    env_id: i64,
    key_column: &str,
    keys: Option<&[String]>,
) -> Result<Vec<Row>> {
    let mut sql = select;
    let mut params = args![env_id];
    if let Some(keys) = keys {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = keys
            .iter()
            .map(|key| {
                params.push(key.into());
                format!("${}", params.len())
            })
            .collect();
        sql.push_str(&format!(
            " AND {key_column} IN ({})",
            placeholders.join(", ")
        ));
    }
    sql.push_str(&format!(" ORDER BY {key_column}"));
    Ok(tx.fetch_all(&sql, params).await?)
}

/// The environment's flags (not archived) as the engine's model, ordered by key; only those
/// of `keys` when given.
async fn load_flags(tx: &mut Tx, env_id: i64, keys: Option<&[String]>) -> Result<Vec<FlagModel>> {
    let sql = format!(
        "SELECT {FLAG_COLUMNS}, {CONFIG_COLUMNS} FROM {CONFIG_FROM} \
         WHERE c.environment_id = $1 AND f.archived = FALSE"
    );
    let rows = rows_by_key(tx, sql, env_id, "f.key", keys).await?;
    rows.iter()
        .map(|row| {
            let config = config_from_row_at(row, 12)?;
            Ok(flag_from_row(row)?.model(&config.configuration, config.version))
        })
        .collect()
}

/// The environment's segments as the engine's model, ordered by key; only those of `keys`
/// when given.
async fn load_segments(
    tx: &mut Tx,
    env_id: i64,
    keys: Option<&[String]>,
) -> Result<Vec<SegmentModel>> {
    let sql = format!("SELECT {SEGMENT_COLUMNS} FROM {SEGMENT_FROM} WHERE s.environment_id = $1");
    let rows = rows_by_key(tx, sql, env_id, "s.key", keys).await?;
    rows.iter()
        .map(|row| Ok(canonical_segment(&segment_from_row(row)?)))
        .collect()
}

async fn changes_after(tx: &mut Tx, env_id: i64, since: i64) -> Result<Vec<Change>> {
    let rows = tx
        .fetch_all(
            "SELECT version, resource_kind, resource_key, op FROM env_changes \
             WHERE environment_id = $1 AND version > $2 \
             ORDER BY version, resource_kind, resource_key",
            args![env_id, since],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(Change {
                version: row.get(0)?,
                kind: ChangeKind::parse(&row.get::<String>(1)?)?,
                key: row.get(2)?,
                op: ChangeOp::parse(&row.get::<String>(3)?)?,
            })
        })
        .collect()
}

/// An audit entry of an import, written once every change is made.
struct PendingAudit {
    action: &'static str,
    kind: ResourceKind,
    key: String,
    environment: Option<String>,
    before: Option<Value>,
    after: Option<Value>,
}

fn invalid(message: String) -> StorageError {
    StorageError::InvalidArgument(message)
}

/// Refuses an imported ruleset naming a flag or a segment twice.
fn check_unique(ruleset: &RulesetData) -> Result<()> {
    let mut seen = HashSet::new();
    if let Some(dup) = ruleset.flags.iter().find(|f| !seen.insert(f.key.as_str())) {
        return Err(invalid(format!(
            "flag `{}` appears more than once",
            dup.key
        )));
    }
    let mut seen = HashSet::new();
    if let Some(dup) = ruleset
        .segments
        .iter()
        .find(|s| !seen.insert(s.key.as_str()))
    {
        return Err(invalid(format!(
            "segment `{}` appears more than once",
            dup.key
        )));
    }
    Ok(())
}

impl Storage {
    /// Loads an environment's whole state, in one consistent snapshot, as the engine's
    /// ruleset: every flag that is not archived (project-level fields merged with this
    /// environment's configuration) and every segment, at the environment's version.
    pub async fn load_ruleset(&self, project: &str, env: &str) -> Result<RulesetData> {
        let mut tx = self.read().await?;
        ruleset_in(&mut tx, project, env).await
    }

    /// [`Storage::load_ruleset`] from the read replica when there is one and it has
    /// replayed version `at_least` (0: any version it holds), else from the primary.
    pub async fn load_ruleset_at_least(
        &self,
        project: &str,
        env: &str,
        at_least: i64,
    ) -> Result<RulesetData> {
        on_replica!(
            self,
            |tx| ruleset_in(&mut tx, project, env).await,
            |data: &RulesetData| i64::try_from(data.version).is_ok_and(|v| v >= at_least)
        )
    }

    /// [`Storage::load_ruleset`] as a JSON string: the export of an environment.
    pub async fn export_environment(&self, project: &str, env: &str) -> Result<String> {
        // The model always serializes.
        Ok(serde_json::to_string(&self.load_ruleset(project, env).await?).unwrap_or_default())
    }

    /// The entries of an environment's change log after version `since`, in version order.
    pub async fn changes_since(
        &self,
        project: &str,
        env: &str,
        since: i64,
    ) -> Result<ChangesSince> {
        let mut tx = self.read().await?;
        let state = env_state(&mut tx, project, env).await?;
        if since < state.log_floor || since > state.version {
            return Ok(ChangesSince::SnapshotRequired {
                version: state.version,
            });
        }
        Ok(ChangesSince::Changes {
            version: state.version,
            changes: changes_after(&mut tx, state.id, since).await?,
        })
    }

    /// What a client holding version `since` needs to reach the current version: the
    /// current JSON of each flag and segment changed since, and the keys of those gone, in
    /// one consistent snapshot. `None` when the change log cannot cover it (the client needs
    /// [`Storage::load_ruleset`]).
    pub async fn load_patch(
        &self,
        project: &str,
        env: &str,
        since: i64,
    ) -> Result<Option<RulesetPatch>> {
        let mut tx = self.read().await?;
        patch_in(&mut tx, project, env, since).await
    }

    /// [`Storage::load_patch`] for a caller that needs version `at_least`: from the read
    /// replica when there is one and it has replayed that version, else from the primary.
    pub async fn load_patch_at_least(
        &self,
        project: &str,
        env: &str,
        since: i64,
        at_least: i64,
    ) -> Result<Option<RulesetPatch>> {
        on_replica!(
            self,
            |tx| patch_in(&mut tx, project, env, since).await,
            |patch: &Option<RulesetPatch>| patch.as_ref().is_some_and(|p| p.version >= at_least)
        )
    }
}

/// An environment's whole ruleset, read through `tx` (see [`Storage::load_ruleset`]).
async fn ruleset_in(tx: &mut Tx, project: &str, env: &str) -> Result<RulesetData> {
    let state = env_state(tx, project, env).await?;
    Ok(RulesetData {
        version: u64::try_from(state.version).unwrap_or(0),
        flags: load_flags(tx, state.id, None).await?,
        segments: load_segments(tx, state.id, None).await?,
    })
}

/// The patch from version `since`, read through `tx` (see [`Storage::load_patch`]).
async fn patch_in(
    tx: &mut Tx,
    project: &str,
    env: &str,
    since: i64,
) -> Result<Option<RulesetPatch>> {
    let state = env_state(tx, project, env).await?;
    if since < state.log_floor || since > state.version {
        return Ok(None);
    }
    // The last operation on each resource wins.
    let mut last: BTreeMap<(ChangeKind, String), ChangeOp> = BTreeMap::new();
    for change in changes_after(tx, state.id, since).await? {
        last.insert((change.kind, change.key), change.op);
    }
    let keys = |kind: ChangeKind, op: ChangeOp| -> Vec<String> {
        last.iter()
            .filter(|((k, _), o)| *k == kind && **o == op)
            .map(|((_, key), _)| key.clone())
            .collect()
    };
    let flag_keys = keys(ChangeKind::Flag, ChangeOp::Upsert);
    let segment_keys = keys(ChangeKind::Segment, ChangeOp::Upsert);
    let upserted_flags = load_flags(tx, state.id, Some(&flag_keys)).await?;
    let upserted_segments = load_segments(tx, state.id, Some(&segment_keys)).await?;
    // A resource logged as upserted but not loadable now is gone.
    let flags_found: HashSet<String> = upserted_flags.iter().map(|f| f.key.clone()).collect();
    let segments_found: HashSet<String> = upserted_segments.iter().map(|s| s.key.clone()).collect();
    let mut deleted_flags = keys(ChangeKind::Flag, ChangeOp::Delete);
    deleted_flags.extend(flag_keys.into_iter().filter(|k| !flags_found.contains(k)));
    deleted_flags.sort();
    let mut deleted_segments = keys(ChangeKind::Segment, ChangeOp::Delete);
    deleted_segments.extend(
        segment_keys
            .into_iter()
            .filter(|k| !segments_found.contains(k)),
    );
    deleted_segments.sort();
    Ok(Some(RulesetPatch {
        from_version: since,
        version: state.version,
        upserted_flags,
        deleted_flags,
        upserted_segments,
        deleted_segments,
    }))
}

impl Storage {
    /// Forgets an environment's change-log entries up to and including `version`: clients
    /// holding an older version then need a snapshot.
    pub async fn prune_changes(&self, project: &str, env: &str, version: i64) -> Result<()> {
        let mut tx = self.write().await?;
        let state = env_state(&mut tx, project, env).await?;
        let floor = version.min(state.version);
        tx.execute(
            "DELETE FROM env_changes WHERE environment_id = $1 AND version <= $2",
            args![state.id, floor],
        )
        .await?;
        tx.execute(
            "UPDATE environments SET log_floor = $2 WHERE id = $1 AND log_floor < $2",
            args![state.id, floor],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Imports the engine's ruleset JSON into an environment, in one transaction at one new
    /// environment version. Each flag it names is created in the project when missing (off
    /// in the other environments), its variations and client-side visibility are updated
    /// when they differ (its kind cannot change), and its configuration here is replaced.
    /// Each segment it names is created or replaced. Nothing else is touched. The ruleset's
    /// `version` is ignored; `expected_version`, when given, must be the environment's.
    pub async fn import_environment(
        &self,
        actor: &str,
        project: &str,
        env: &str,
        ruleset: &RulesetData,
        expected_version: Option<i64>,
    ) -> Result<ImportSummary> {
        check_unique(ruleset)?;
        let (flags, segments) = (&ruleset.flags, &ruleset.segments);
        let now = now_millis();
        let stamp = Stamp::new(actor, "environment.import", now);
        let mut tx = self.write().await?;
        let project_id = lock_project(&mut tx, project).await?;
        let target = bump_env(&mut tx, project, env, now, self.guards()).await?;
        if let Some(expected) = expected_version {
            check_version(
                ResourceKind::Environment,
                &format!("{project}/{env}"),
                expected,
                target.version - 1,
            )?;
        }
        let mut others: Option<Vec<BumpedEnv>> = None;
        let mut summary = ImportSummary {
            version: target.version,
            created_flags: Vec::new(),
            updated_flags: Vec::new(),
            segments: Vec::new(),
        };
        let mut entries: Vec<PendingAudit> = Vec::new();

        for flag in flags {
            let existing = match fetch_flag(&mut tx, project, &flag.key).await {
                Ok(found) => Some(found),
                Err(StorageError::NotFound { .. }) => None,
                Err(err) => return Err(err),
            };
            let mut project_level_changed = false;
            let archived = match existing {
                None => {
                    let new = NewFlag {
                        key: flag.key.clone(),
                        kind: flag.kind,
                        variations: flag.variations.clone(),
                        name: String::new(),
                        description: String::new(),
                        tags: Vec::new(),
                        client_side: flag.client_side,
                        off_variation: None,
                        fallthrough: Serve::variation(0),
                    };
                    insert_flag(&mut tx, project_id, &new, stamp).await?;
                    let (_, created) = fetch_flag(&mut tx, project, &flag.key).await?;
                    entries.push(PendingAudit {
                        action: "flag.create",
                        kind: ResourceKind::Flag,
                        key: flag.key.clone(),
                        environment: None,
                        before: None,
                        after: to_audit(&created),
                    });
                    summary.created_flags.push(flag.key.clone());
                    project_level_changed = true;
                    false
                }
                Some((flag_id, before)) => {
                    if before.kind != flag.kind {
                        return Err(invalid(format!(
                            "flag `{}` is a {} flag here; an import cannot make it a {} flag",
                            flag.key,
                            before.kind.as_str(),
                            flag.kind.as_str()
                        )));
                    }
                    if before.variations != flag.variations
                        || before.client_side != flag.client_side
                    {
                        let changed = super::Flag {
                            variations: flag.variations.clone(),
                            client_side: flag.client_side,
                            ..before.clone()
                        };
                        rewrite_flag(&mut tx, flag_id, &changed, stamp).await?;
                        let (_, after) = fetch_flag(&mut tx, project, &flag.key).await?;
                        entries.push(PendingAudit {
                            action: "flag.update",
                            kind: ResourceKind::Flag,
                            key: flag.key.clone(),
                            environment: None,
                            before: to_audit(&before),
                            after: to_audit(&after),
                        });
                        project_level_changed = !before.archived;
                    }
                    summary.updated_flags.push(flag.key.clone());
                    before.archived
                }
            };
            if project_level_changed {
                if others.is_none() {
                    others = Some(bump_other_envs(&mut tx, project_id, target.id, now).await?);
                }
                let envs = others.as_deref().unwrap_or_default();
                log_flag_everywhere(&mut tx, envs, &flag.key, ChangeOp::Upsert).await?;
            }
            let (before, _) = fetch_config(&mut tx, target.id, &flag.key).await?;
            rewrite_config(
                &mut tx,
                &target,
                &flag.key,
                &flag.configuration(),
                archived,
                stamp,
            )
            .await?;
            let (after, _) = fetch_config(&mut tx, target.id, &flag.key).await?;
            entries.push(PendingAudit {
                action: "flag_config.update",
                kind: ResourceKind::FlagConfig,
                key: flag.key.clone(),
                environment: Some(env.to_owned()),
                before: to_audit(&before),
                after: to_audit(&after),
            });
        }

        for segment in segments {
            let input = SegmentInput {
                key: segment.key.clone(),
                name: String::new(),
                description: String::new(),
                included: segment.included.clone(),
                excluded: segment.excluded.clone(),
                rules: segment.rules.clone(),
            };
            let before =
                load_segments(&mut tx, target.id, Some(std::slice::from_ref(&segment.key)))
                    .await?
                    .pop()
                    .and_then(|s| to_audit(&s));
            let created = upsert_segment(&mut tx, &target, &input, true, stamp).await?;
            let after = load_segments(&mut tx, target.id, Some(std::slice::from_ref(&segment.key)))
                .await?
                .pop()
                .and_then(|s| to_audit(&s));
            let action = if created {
                "segment.create"
            } else {
                "segment.update"
            };
            entries.push(PendingAudit {
                action,
                kind: ResourceKind::Segment,
                key: segment.key.clone(),
                environment: Some(env.to_owned()),
                before,
                after,
            });
            summary.segments.push(segment.key.clone());
        }

        for entry in entries {
            AuditRecord::new(actor, entry.action, entry.kind, &entry.key, now)
                .scope(Some(project), entry.environment.as_deref())
                .change(entry.before, entry.after)
                .write(&mut tx)
                .await?;
        }
        AuditRecord::new(
            actor,
            "environment.import",
            ResourceKind::Environment,
            env,
            now,
        )
        .scope(Some(project), Some(env))
        .change(None, to_audit(&summary))
        .write(&mut tx)
        .await?;
        let mut bumped = vec![target];
        bumped.extend(others.unwrap_or_default());
        self.commit_and_notify(tx, project, &bumped).await?;
        Ok(summary)
    }
}

/// Bumps every environment of a project but one (already bumped by the caller).
async fn bump_other_envs(
    tx: &mut Tx,
    project_id: i64,
    except: i64,
    now: Millis,
) -> Result<Vec<BumpedEnv>> {
    let rows = tx
        .fetch_all(
            "UPDATE environments SET version = version + 1, updated_at = $3 \
             WHERE project_id = $1 AND id <> $2 RETURNING id, key, version",
            args![project_id, except, now],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(BumpedEnv {
                id: row.get(0)?,
                key: row.get(1)?,
                version: row.get(2)?,
            })
        })
        .collect()
}

impl Storage {
    /// The current version of every environment and when it was committed, as
    /// `(project, environment, version, updated_at)`: the periodic check that catches
    /// changes whose notice was lost.
    pub async fn environment_versions(&self) -> Result<Vec<(String, String, i64, Millis)>> {
        let mut tx = self.read().await?;
        let rows = tx
            .fetch_all(
                "SELECT p.key, e.key, e.version, e.updated_at FROM environments e \
                 JOIN projects p ON p.id = e.project_id",
                args![],
            )
            .await?;
        rows.iter()
            .map(|row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))
            .collect()
    }

    /// The current version of one environment.
    pub async fn environment_version(&self, project: &str, env: &str) -> Result<i64> {
        let mut tx = self.read().await?;
        Ok(env_state(&mut tx, project, env).await?.version)
    }
}
