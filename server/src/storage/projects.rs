//! Projects and environments.

use super::db::{Row, Tx, args};
use super::history::{FlagsToRecord, Stamp, record_flags};
use super::{
    AuditRecord, BumpedEnv, Environment, EnvironmentUpdate, Millis, NewEnvironment, NewProject,
    Page, PageRequest, Project, ResourceKind, Result, Storage, StorageError, bump_env,
    check_version, from_text, lock_env, lock_project, not_found, now_millis, project_id, to_audit,
    to_text,
};

const PROJECT_COLUMNS: &str = "key, name, description, version, created_at, updated_at";
const ENV_COLUMNS: &str = "p.key, e.key, e.name, e.description, e.version, e.created_at, \
     e.updated_at, e.allowed_origins, e.event_retention_days";

fn project_from_row(row: &Row) -> Result<Project> {
    Ok(Project {
        key: row.get(0)?,
        name: row.get(1)?,
        description: row.get(2)?,
        version: row.get(3)?,
        created_at: row.get(4)?,
        updated_at: row.get(5)?,
    })
}

fn env_from_row(row: &Row) -> Result<Environment> {
    Ok(Environment {
        project_key: row.get(0)?,
        key: row.get(1)?,
        name: row.get(2)?,
        description: row.get(3)?,
        version: row.get(4)?,
        created_at: row.get(5)?,
        updated_at: row.get(6)?,
        allowed_origins: from_text(&row.get::<String>(7)?, "environments.allowed_origins")?,
        event_retention_days: u32::try_from(row.get::<i64>(8)?).map_err(|_| {
            StorageError::Corrupt("environments.event_retention_days out of range".into())
        })?,
    })
}

async fn fetch_project(tx: &mut Tx, key: &str) -> Result<Project> {
    let sql = format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE key = $1");
    match tx.fetch_optional(&sql, args![key]).await? {
        Some(row) => project_from_row(&row),
        None => Err(not_found(ResourceKind::Project, key)),
    }
}

pub(super) async fn fetch_env(tx: &mut Tx, project: &str, env: &str) -> Result<Environment> {
    let sql = format!(
        "SELECT {ENV_COLUMNS} FROM environments e JOIN projects p ON p.id = e.project_id \
         WHERE p.key = $1 AND e.key = $2"
    );
    match tx.fetch_optional(&sql, args![project, env]).await? {
        Some(row) => env_from_row(&row),
        None => {
            project_id(tx, project).await?;
            Err(not_found(
                ResourceKind::Environment,
                &format!("{project}/{env}"),
            ))
        }
    }
}

/// Locks a project for a write and reads it; a conflict unless it is at `expected_version`.
async fn lock_project_at(tx: &mut Tx, key: &str, expected_version: i64) -> Result<Project> {
    lock_project(tx, key).await?;
    let before = fetch_project(tx, key).await?;
    check_version(ResourceKind::Project, key, expected_version, before.version)?;
    Ok(before)
}

fn name_or_key(name: &str, key: &str) -> String {
    if name.is_empty() {
        key.to_owned()
    } else {
        name.to_owned()
    }
}

impl Storage {
    /// Locks an environment for a write, reads it and bumps its version; a conflict unless
    /// it was at `expected_version`. The environment before the write, and the bump.
    async fn bump_env_at(
        &self,
        tx: &mut Tx,
        project: &str,
        env: &str,
        expected_version: i64,
        now: Millis,
    ) -> Result<(Environment, BumpedEnv)> {
        lock_env(tx, project, env).await?;
        let before = fetch_env(tx, project, env).await?;
        let bumped = bump_env(tx, project, env, now, self.guards()).await?;
        check_version(
            ResourceKind::Environment,
            &format!("{project}/{env}"),
            expected_version,
            bumped.version - 1,
        )?;
        Ok((before, bumped))
    }

    /// Creates a project at version 1.
    pub async fn create_project(&self, actor: &str, new: &NewProject) -> Result<Project> {
        let now = now_millis();
        let mut tx = self.write().await?;
        tx.execute(
            "INSERT INTO projects (key, name, description, version, created_at, updated_at) \
             VALUES ($1, $2, $3, 1, $4, $4)",
            args![
                &new.key,
                name_or_key(&new.name, &new.key),
                &new.description,
                now
            ],
        )
        .await
        .map_err(StorageError::on_write(ResourceKind::Project, &new.key))?;
        let project = fetch_project(&mut tx, &new.key).await?;
        AuditRecord::new(
            actor,
            "project.create",
            ResourceKind::Project,
            &project.key,
            now,
        )
        .scope(Some(&project.key), None)
        .change(None, to_audit(&project))
        .write(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(project)
    }

    /// Returns one project.
    pub async fn get_project(&self, key: &str) -> Result<Project> {
        let mut tx = self.read().await?;
        fetch_project(&mut tx, key).await
    }

    /// Lists projects ordered by key.
    pub async fn list_projects(&self, page: &PageRequest) -> Result<Page<Project>> {
        let limit = page.effective_limit();
        let mut tx = self.read().await?;
        let sql =
            format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE key > $1 ORDER BY key LIMIT $2");
        let rows = tx
            .fetch_all(
                &sql,
                args![page.cursor.clone().unwrap_or_default(), limit + 1],
            )
            .await?;
        page_from_rows(&rows, project_from_row, limit, |p| p.key.clone())
    }

    /// Replaces a project's name and description.
    pub async fn update_project(
        &self,
        actor: &str,
        key: &str,
        expected_version: i64,
        name: &str,
        description: &str,
    ) -> Result<Project> {
        let now = now_millis();
        let mut tx = self.write().await?;
        let before = lock_project_at(&mut tx, key, expected_version).await?;
        tx.execute(
            "UPDATE projects SET name = $2, description = $3, version = version + 1, \
             updated_at = $4 WHERE key = $1",
            args![key, name_or_key(name, key), description, now],
        )
        .await?;
        let after = fetch_project(&mut tx, key).await?;
        AuditRecord::new(actor, "project.update", ResourceKind::Project, key, now)
            .scope(Some(key), None)
            .change(to_audit(&before), to_audit(&after))
            .write(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Deletes a project with everything in it, and every role bound to its key.
    pub async fn delete_project(
        &self,
        actor: &str,
        key: &str,
        expected_version: i64,
    ) -> Result<()> {
        let now = now_millis();
        let mut tx = self.write().await?;
        let before = lock_project_at(&mut tx, key, expected_version).await?;
        tx.execute("DELETE FROM projects WHERE key = $1", args![key])
            .await?;
        tx.execute(
            "DELETE FROM admin_token_roles WHERE project_key = $1",
            args![key],
        )
        .await?;
        AuditRecord::new(actor, "project.delete", ResourceKind::Project, key, now)
            .scope(Some(key), None)
            .change(to_audit(&before), None)
            .write(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Creates an environment at version 1, with a configuration for every flag of the
    /// project (off, with the flag's initial off variation and fallthrough).
    pub async fn create_environment(
        &self,
        actor: &str,
        project: &str,
        new: &NewEnvironment,
    ) -> Result<Environment> {
        let now = now_millis();
        let mut tx = self.write().await?;
        let project_id = lock_project(&mut tx, project).await?;
        let key = format!("{project}/{}", new.key);
        let row = tx
            .fetch_optional(
                "INSERT INTO environments (project_id, key, name, description, version, log_floor, \
                 created_at, updated_at, allowed_origins, event_retention_days) \
                 VALUES ($1, $2, $3, $4, 1, 1, $5, $5, $6, $7) RETURNING id",
                args![
                    project_id,
                    &new.key,
                    name_or_key(&new.name, &new.key),
                    &new.description,
                    now,
                    to_text(&new.allowed_origins),
                    i64::from(new.event_retention_days)
                ],
            )
            .await
            .map_err(StorageError::on_write(ResourceKind::Environment, &key))?;
        let env_id: i64 = match row {
            Some(row) => row.get(0)?,
            None => return Err(StorageError::Corrupt("insert returned no id".into())),
        };
        tx.execute(
            "INSERT INTO flag_configs (environment_id, flag_id, is_on, off_variation, targets, \
             rules, fallthrough, prerequisites, salt, version, updated_at) \
             SELECT $1, id, FALSE, default_off_variation, '[]', '[]', default_fallthrough, '[]', \
             NULL, 1, $2 FROM flags WHERE project_id = $3",
            args![env_id, now, project_id],
        )
        .await?;
        let stamp = Stamp::new(actor, "environment.create", now);
        record_flags(&mut tx, FlagsToRecord::Environment { env_id }, stamp).await?;
        let env = fetch_env(&mut tx, project, &new.key).await?;
        AuditRecord::new(
            actor,
            "environment.create",
            ResourceKind::Environment,
            &env.key,
            now,
        )
        .scope(Some(project), Some(&env.key))
        .change(None, to_audit(&env))
        .write(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(env)
    }

    /// Returns one environment.
    pub async fn get_environment(&self, project: &str, env: &str) -> Result<Environment> {
        let mut tx = self.read().await?;
        fetch_env(&mut tx, project, env).await
    }

    /// The allowed origins of every environment of every project, for the CORS preflights,
    /// which name no environment.
    pub async fn every_allowed_origins(&self) -> Result<Vec<Vec<String>>> {
        let mut tx = self.read().await?;
        let rows = tx
            .fetch_all("SELECT allowed_origins FROM environments", args![])
            .await?;
        rows.iter()
            .map(|row| from_text(&row.get::<String>(0)?, "environments.allowed_origins"))
            .collect()
    }

    /// Lists every environment of a project, ordered by key.
    pub async fn list_environments(&self, project: &str) -> Result<Vec<Environment>> {
        let mut tx = self.read().await?;
        let id = project_id(&mut tx, project).await?;
        let sql = format!(
            "SELECT {ENV_COLUMNS} FROM environments e JOIN projects p ON p.id = e.project_id \
             WHERE e.project_id = $1 ORDER BY e.key"
        );
        let rows = tx.fetch_all(&sql, args![id]).await?;
        rows.iter().map(env_from_row).collect()
    }

    /// Replaces an environment's name and description, and its allowed origins when the
    /// update has them; bumps its version.
    pub async fn update_environment(
        &self,
        actor: &str,
        project: &str,
        env: &str,
        expected_version: i64,
        update: EnvironmentUpdate<'_>,
    ) -> Result<Environment> {
        let now = now_millis();
        let mut tx = self.write().await?;
        let (before, bumped) = self
            .bump_env_at(&mut tx, project, env, expected_version, now)
            .await?;
        let origins = update.allowed_origins.unwrap_or(&before.allowed_origins);
        let retention = update
            .event_retention_days
            .unwrap_or(before.event_retention_days);
        tx.execute(
            "UPDATE environments SET name = $2, description = $3, allowed_origins = $4, \
             event_retention_days = $5 WHERE id = $1",
            args![
                bumped.id,
                name_or_key(update.name, env),
                update.description,
                to_text(origins),
                i64::from(retention)
            ],
        )
        .await?;
        let after = fetch_env(&mut tx, project, env).await?;
        let stamp = Stamp::new(actor, "environment.update", now);
        let entry = stamp.entry(ResourceKind::Environment, env, project, env);
        self.commit_env_write(tx, entry, Some(&before), Some(&after), &bumped)
            .await?;
        Ok(after)
    }

    /// Deletes an environment with its flag configurations, segments, SDK keys and change log.
    pub async fn delete_environment(
        &self,
        actor: &str,
        project: &str,
        env: &str,
        expected_version: i64,
    ) -> Result<()> {
        let now = now_millis();
        let mut tx = self.write().await?;
        let (before, bumped) = self
            .bump_env_at(&mut tx, project, env, expected_version, now)
            .await?;
        tx.execute("DELETE FROM environments WHERE id = $1", args![bumped.id])
            .await?;
        let stamp = Stamp::new(actor, "environment.delete", now);
        let entry = stamp.entry(ResourceKind::Environment, env, project, env);
        self.commit_env_write(tx, entry, Some(&before), None, &bumped)
            .await
    }
}

/// The page `rows` hold, each read by `read`, when they were fetched with `LIMIT limit + 1`.
pub(super) fn page_from_rows<T>(
    rows: &[Row],
    read: impl FnMut(&Row) -> Result<T>,
    limit: i64,
    key: impl Fn(&T) -> String,
) -> Result<Page<T>> {
    let mut items = rows.iter().map(read).collect::<Result<Vec<_>>>()?;
    Ok(paginate_by_key(&mut items, limit, key))
}

/// Cuts a page fetched with `limit + 1` rows down to `limit` and computes its cursor.
pub(super) fn paginate_by_key<T>(
    items: &mut Vec<T>,
    limit: i64,
    key: impl Fn(&T) -> String,
) -> Page<T> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(key)
    } else {
        None
    };
    Page {
        items: std::mem::take(items),
        next_cursor,
    }
}
