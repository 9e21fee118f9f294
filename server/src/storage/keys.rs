//! SDK keys and admin tokens. Only hashes of their secrets are stored.

use super::db::{Row, Tx, args};
use super::history::Stamp;
use super::{
    AdminToken, AuditRecord, Millis, NewAdminToken, NewSdkKey, ResourceKind, Result, Role,
    RoleBinding, SdkKey, SdkKeyKind, Storage, StorageError, not_found, now_millis, parsed_column,
    to_audit,
};

const SDK_KEY_COLUMNS: &str = "s.id, p.key, e.key, s.kind, s.name, s.prefix, s.created_at, \
     s.expires_at, s.revoked_at";
const SDK_KEY_FROM: &str = "sdk_keys s JOIN environments e ON e.id = s.environment_id \
     JOIN projects p ON p.id = e.project_id";

const TOKEN_COLUMNS: &str = "id, principal, description, created_at, expires_at, revoked_at";

fn sdk_key_from_row(row: &Row) -> Result<SdkKey> {
    Ok(SdkKey {
        id: row.get(0)?,
        project_key: row.get(1)?,
        environment_key: row.get(2)?,
        kind: parsed_column(row, 3, "sdk key kind", SdkKeyKind::parse)?,
        name: row.get(4)?,
        prefix: row.get(5)?,
        created_at: row.get(6)?,
        expires_at: row.get(7)?,
        revoked_at: row.get(8)?,
    })
}

async fn fetch_sdk_key(tx: &mut Tx, project: &str, id: i64) -> Result<SdkKey> {
    let sql =
        format!("SELECT {SDK_KEY_COLUMNS} FROM {SDK_KEY_FROM} WHERE p.key = $1 AND s.id = $2");
    match tx.fetch_optional(&sql, args![project, id]).await? {
        Some(row) => sdk_key_from_row(&row),
        None => Err(not_found(ResourceKind::SdkKey, &id.to_string())),
    }
}

async fn insert_sdk_key(
    tx: &mut Tx,
    project: &str,
    env: &str,
    new: &NewSdkKey,
    now: Millis,
) -> Result<SdkKey> {
    let env_id: i64 = match tx
        .fetch_optional(
            "SELECT e.id FROM environments e JOIN projects p ON p.id = e.project_id \
             WHERE p.key = $1 AND e.key = $2",
            args![project, env],
        )
        .await?
    {
        Some(row) => row.get(0)?,
        None => {
            super::project_id(tx, project).await?;
            return Err(not_found(
                ResourceKind::Environment,
                &format!("{project}/{env}"),
            ));
        }
    };
    let row = tx
        .fetch_optional(
            "INSERT INTO sdk_keys (environment_id, kind, name, prefix, key_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            args![
                env_id,
                new.kind.as_str(),
                &new.name,
                &new.prefix,
                &new.hash,
                now
            ],
        )
        .await
        .map_err(StorageError::on_write(ResourceKind::SdkKey, &new.prefix))?;
    let id: i64 = match row {
        Some(row) => row.get(0)?,
        None => return Err(StorageError::Corrupt("insert returned no id".into())),
    };
    fetch_sdk_key(tx, project, id).await
}

fn token_from_row(row: &Row, roles: Vec<RoleBinding>) -> Result<AdminToken> {
    Ok(AdminToken {
        id: row.get(0)?,
        principal: row.get(1)?,
        description: row.get(2)?,
        roles,
        created_at: row.get(3)?,
        expires_at: row.get(4)?,
        revoked_at: row.get(5)?,
    })
}

fn binding_from_row(row: &Row, first: usize) -> Result<RoleBinding> {
    Ok(RoleBinding {
        project_key: row.get(first)?,
        role: parsed_column(row, first + 1, "role", Role::parse)?,
    })
}

async fn fetch_roles(tx: &mut Tx, id: &str) -> Result<Vec<RoleBinding>> {
    let rows = tx
        .fetch_all(
            "SELECT project_key, role FROM admin_token_roles WHERE token_id = $1 ORDER BY project_key",
            args![id],
        )
        .await?;
    rows.iter().map(|row| binding_from_row(row, 0)).collect()
}

async fn fetch_token_where(tx: &mut Tx, column: &str, value: &str) -> Result<Option<AdminToken>> {
    let sql = format!("SELECT {TOKEN_COLUMNS} FROM admin_tokens WHERE {column} = $1");
    match tx.fetch_optional(&sql, args![value]).await? {
        Some(row) => {
            let id: String = row.get(0)?;
            let roles = fetch_roles(tx, &id).await?;
            Ok(Some(token_from_row(&row, roles)?))
        }
        None => Ok(None),
    }
}

async fn fetch_token(tx: &mut Tx, id: &str) -> Result<AdminToken> {
    fetch_token_where(tx, "id", id)
        .await?
        .ok_or_else(|| not_found(ResourceKind::AdminToken, id))
}

/// Reads admin token `id` back after `stamp`'s write to it and audits the write against
/// `before` (absent for a creation); the token as it now is.
async fn audit_token(
    tx: &mut Tx,
    stamp: Stamp<'_>,
    id: &str,
    before: Option<&AdminToken>,
) -> Result<AdminToken> {
    let after = fetch_token(tx, id).await?;
    AuditRecord::new(
        stamp.actor,
        stamp.action,
        ResourceKind::AdminToken,
        id,
        stamp.at,
    )
    .change(before.and_then(to_audit), to_audit(&after))
    .write(tx)
    .await?;
    Ok(after)
}

async fn replace_roles(tx: &mut Tx, id: &str, roles: &[RoleBinding]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = roles.iter().find(|b| !seen.insert(b.project_key.as_str())) {
        return Err(StorageError::InvalidArgument(format!(
            "project `{}` is bound more than once",
            dup.project_key
        )));
    }
    tx.execute(
        "DELETE FROM admin_token_roles WHERE token_id = $1",
        args![id],
    )
    .await?;
    for binding in roles {
        tx.execute(
            "INSERT INTO admin_token_roles (token_id, project_key, role) VALUES ($1, $2, $3)",
            args![id, &binding.project_key, binding.role.as_str()],
        )
        .await?;
    }
    Ok(())
}

impl Storage {
    /// Stores a new SDK key for an environment (its secret's hash, never the secret).
    pub async fn issue_sdk_key(
        &self,
        actor: &str,
        project: &str,
        env: &str,
        new: &NewSdkKey,
    ) -> Result<SdkKey> {
        let now = now_millis();
        let mut tx = self.write().await?;
        let key = insert_sdk_key(&mut tx, project, env, new, now).await?;
        AuditRecord::new(
            actor,
            "sdk_key.issue",
            ResourceKind::SdkKey,
            &key.id.to_string(),
            now,
        )
        .scope(Some(project), Some(env))
        .change(None, to_audit(&key))
        .write(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(key)
    }

    /// Returns one SDK key of a project.
    pub async fn get_sdk_key(&self, project: &str, id: i64) -> Result<SdkKey> {
        let mut tx = self.read().await?;
        fetch_sdk_key(&mut tx, project, id).await
    }

    /// Lists a project's SDK keys (of one environment when `env` is set), ordered by id;
    /// revoked and expired keys only when `include_inactive`.
    pub async fn list_sdk_keys(
        &self,
        project: &str,
        env: Option<&str>,
        include_inactive: bool,
    ) -> Result<Vec<SdkKey>> {
        let now = now_millis();
        let mut tx = self.read().await?;
        super::project_id(&mut tx, project).await?;
        if let Some(env) = env {
            super::projects::fetch_env(&mut tx, project, env).await?;
        }
        let sql = format!(
            "SELECT {SDK_KEY_COLUMNS} FROM {SDK_KEY_FROM} WHERE p.key = $1 \
             AND ($2 IS NULL OR e.key = $2) ORDER BY s.id"
        );
        let rows = tx.fetch_all(&sql, args![project, env]).await?;
        let mut keys = rows
            .iter()
            .map(sdk_key_from_row)
            .collect::<Result<Vec<_>>>()?;
        if !include_inactive {
            keys.retain(|k| k.is_active(now));
        }
        Ok(keys)
    }

    /// Finds the SDK key whose secret hashes to `hash`, if it exists and works now.
    pub async fn lookup_sdk_key(&self, hash: &str) -> Result<Option<SdkKey>> {
        let now = now_millis();
        let mut tx = self.read().await?;
        let sql = format!("SELECT {SDK_KEY_COLUMNS} FROM {SDK_KEY_FROM} WHERE s.key_hash = $1");
        match tx.fetch_optional(&sql, args![hash]).await? {
            Some(row) => Ok(Some(sdk_key_from_row(&row)?).filter(|k| k.is_active(now))),
            None => Ok(None),
        }
    }

    /// Revokes an SDK key at once. Revoking a revoked key changes nothing.
    pub async fn revoke_sdk_key(&self, actor: &str, project: &str, id: i64) -> Result<SdkKey> {
        let now = now_millis();
        let mut tx = self.write().await?;
        let before = fetch_sdk_key(&mut tx, project, id).await?;
        if before.revoked_at.is_some() {
            return Ok(before);
        }
        tx.execute(
            "UPDATE sdk_keys SET revoked_at = $2 WHERE id = $1",
            args![id, now],
        )
        .await?;
        let after = fetch_sdk_key(&mut tx, project, id).await?;
        AuditRecord::new(
            actor,
            "sdk_key.revoke",
            ResourceKind::SdkKey,
            &id.to_string(),
            now,
        )
        .scope(Some(project), Some(&after.environment_key))
        .change(to_audit(&before), to_audit(&after))
        .write(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Replaces an SDK key by `new` (same environment; same kind, or it is refused; an empty
    /// name keeps the old one). The old key is revoked at once when `old_expires_at` is
    /// `None`, otherwise it keeps working until then.
    pub async fn rotate_sdk_key(
        &self,
        actor: &str,
        project: &str,
        id: i64,
        new: &NewSdkKey,
        old_expires_at: Option<Millis>,
    ) -> Result<SdkKey> {
        let now = now_millis();
        let mut tx = self.write().await?;
        let old = fetch_sdk_key(&mut tx, project, id).await?;
        if !old.is_active(now) {
            return Err(StorageError::InvalidArgument(format!(
                "sdk key {id} is revoked or expired and cannot be rotated"
            )));
        }
        if old.kind != new.kind {
            return Err(StorageError::InvalidArgument(format!(
                "sdk key {id} is a {} key; its replacement cannot be a {} key",
                old.kind.as_str(),
                new.kind.as_str()
            )));
        }
        match old_expires_at {
            None => {
                tx.execute(
                    "UPDATE sdk_keys SET revoked_at = $2 WHERE id = $1",
                    args![id, now],
                )
                .await?
            }
            Some(at) => {
                tx.execute(
                    "UPDATE sdk_keys SET expires_at = $2 WHERE id = $1",
                    args![id, at],
                )
                .await?
            }
        };
        let named = NewSdkKey {
            name: if new.name.is_empty() {
                old.name.clone()
            } else {
                new.name.clone()
            },
            ..new.clone()
        };
        let replacement =
            insert_sdk_key(&mut tx, project, &old.environment_key, &named, now).await?;
        let retired = fetch_sdk_key(&mut tx, project, id).await?;
        AuditRecord::new(
            actor,
            "sdk_key.rotate",
            ResourceKind::SdkKey,
            &id.to_string(),
            now,
        )
        .scope(Some(project), Some(&old.environment_key))
        .change(
            to_audit(&old),
            to_audit(&serde_json::json!({ "retired": retired, "replacement": replacement })),
        )
        .write(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(replacement)
    }

    /// Stores a new admin token (its hash, never the signed token) with its roles.
    pub async fn create_admin_token(&self, actor: &str, new: &NewAdminToken) -> Result<AdminToken> {
        let now = now_millis();
        let mut tx = self.write().await?;
        tx.execute(
            "INSERT INTO admin_tokens (id, principal, description, token_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            args![&new.id, &new.principal, &new.description, &new.hash, now, new.expires_at],
        )
        .await
        .map_err(StorageError::on_write(ResourceKind::AdminToken, &new.id))?;
        replace_roles(&mut tx, &new.id, &new.roles).await?;
        let stamp = Stamp::new(actor, "admin_token.create", now);
        let token = audit_token(&mut tx, stamp, &new.id, None).await?;
        tx.commit().await?;
        Ok(token)
    }

    /// Returns one admin token.
    pub async fn get_admin_token(&self, id: &str) -> Result<AdminToken> {
        let mut tx = self.read().await?;
        fetch_token(&mut tx, id).await
    }

    /// Finds the admin token whose signed form hashes to `hash`, if it exists and works now.
    pub async fn lookup_admin_token(&self, hash: &str) -> Result<Option<AdminToken>> {
        let now = now_millis();
        let mut tx = self.read().await?;
        Ok(fetch_token_where(&mut tx, "token_hash", hash)
            .await?
            .filter(|t| t.is_active(now)))
    }

    /// Lists admin tokens ordered by id; revoked and expired ones only when
    /// `include_inactive`.
    pub async fn list_admin_tokens(&self, include_inactive: bool) -> Result<Vec<AdminToken>> {
        let now = now_millis();
        let mut tx = self.read().await?;
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM admin_tokens ORDER BY id");
        let rows = tx.fetch_all(&sql, args![]).await?;
        let role_rows = tx
            .fetch_all(
                "SELECT token_id, project_key, role FROM admin_token_roles \
                 ORDER BY token_id, project_key",
                args![],
            )
            .await?;
        let mut roles: std::collections::HashMap<String, Vec<RoleBinding>> = Default::default();
        for row in &role_rows {
            roles
                .entry(row.get(0)?)
                .or_default()
                .push(binding_from_row(row, 1)?);
        }
        let mut tokens = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.get(0)?;
            let token = token_from_row(row, roles.remove(&id).unwrap_or_default())?;
            if include_inactive || token.is_active(now) {
                tokens.push(token);
            }
        }
        Ok(tokens)
    }

    /// Replaces an admin token's roles.
    pub async fn set_admin_token_roles(
        &self,
        actor: &str,
        id: &str,
        roles: &[RoleBinding],
    ) -> Result<AdminToken> {
        let now = now_millis();
        let mut tx = self.write().await?;
        let before = fetch_token(&mut tx, id).await?;
        replace_roles(&mut tx, id, roles).await?;
        let stamp = Stamp::new(actor, "admin_token.set_roles", now);
        let after = audit_token(&mut tx, stamp, id, Some(&before)).await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Revokes an admin token at once. Revoking a revoked token changes nothing.
    pub async fn revoke_admin_token(&self, actor: &str, id: &str) -> Result<AdminToken> {
        let now = now_millis();
        let mut tx = self.write().await?;
        let before = fetch_token(&mut tx, id).await?;
        if before.revoked_at.is_some() {
            return Ok(before);
        }
        tx.execute(
            "UPDATE admin_tokens SET revoked_at = $2 WHERE id = $1",
            args![id, now],
        )
        .await?;
        let stamp = Stamp::new(actor, "admin_token.revoke", now);
        let after = audit_token(&mut tx, stamp, id, Some(&before)).await?;
        tx.commit().await?;
        Ok(after)
    }
}
