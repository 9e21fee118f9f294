//! Segments, per environment.

use super::db::{Row, Tx, args};
use super::history::{Stamp, record_segment};
use super::projects::page_from_rows;
use super::{
    BumpedEnv, ChangeKind, ChangeOp, Page, PageRequest, ResourceKind, Result, Segment,
    SegmentInput, SegmentModel, Storage, StorageError, bump_env, check_version, from_text,
    log_change, not_found, now_millis, to_text,
};

pub(super) const SEGMENT_COLUMNS: &str = "p.key, e.key, s.key, s.name, s.description, s.included, \
     s.excluded, s.rules, s.version, s.created_at, s.updated_at";

pub(super) const SEGMENT_FROM: &str = "segments s JOIN environments e ON e.id = s.environment_id \
     JOIN projects p ON p.id = e.project_id";

pub(super) fn segment_from_row(row: &Row) -> Result<Segment> {
    Ok(Segment {
        project_key: row.get(0)?,
        environment_key: row.get(1)?,
        key: row.get(2)?,
        name: row.get(3)?,
        description: row.get(4)?,
        included: from_text(&row.get::<String>(5)?, "segment included")?,
        excluded: from_text(&row.get::<String>(6)?, "segment excluded")?,
        rules: from_text(&row.get::<String>(7)?, "segment rules")?,
        version: row.get(8)?,
        created_at: row.get(9)?,
        updated_at: row.get(10)?,
    })
}

pub(super) async fn fetch_segment(tx: &mut Tx, env_id: i64, key: &str) -> Result<Segment> {
    let sql = format!(
        "SELECT {SEGMENT_COLUMNS} FROM {SEGMENT_FROM} WHERE s.environment_id = $1 AND s.key = $2"
    );
    match tx.fetch_optional(&sql, args![env_id, key]).await? {
        Some(row) => segment_from_row(&row),
        None => Err(not_found(ResourceKind::Segment, key)),
    }
}

/// Creates a segment or, when `replace` is set and it exists, replaces it; logs it and
/// records the new version. Returns whether it was created.
pub(super) async fn upsert_segment(
    tx: &mut Tx,
    env: &BumpedEnv,
    input: &SegmentInput,
    replace: bool,
    stamp: Stamp<'_>,
) -> Result<bool> {
    let now = stamp.at;
    let name = if input.name.is_empty() {
        input.key.clone()
    } else {
        input.name.clone()
    };
    let updated = if replace {
        tx.execute(
            "UPDATE segments SET name = $3, description = $4, included = $5, excluded = $6, \
             rules = $7, version = version + 1, updated_at = $8 \
             WHERE environment_id = $1 AND key = $2",
            args![
                env.id,
                &input.key,
                name.clone(),
                &input.description,
                to_text(&input.included),
                to_text(&input.excluded),
                to_text(&input.rules),
                now,
            ],
        )
        .await?
    } else {
        0
    };
    if updated == 0 {
        tx.execute(
            "INSERT INTO segments (environment_id, key, name, description, included, excluded, \
             rules, version, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $8)",
            args![
                env.id,
                &input.key,
                name,
                &input.description,
                to_text(&input.included),
                to_text(&input.excluded),
                to_text(&input.rules),
                now,
            ],
        )
        .await
        .map_err(StorageError::on_write(ResourceKind::Segment, &input.key))?;
    }
    log_change(tx, env, ChangeKind::Segment, &input.key, ChangeOp::Upsert).await?;
    record_segment(tx, env.id, &input.key, stamp).await?;
    Ok(updated == 0)
}

impl Storage {
    /// Creates a segment at version 1; bumps the environment.
    pub async fn create_segment(
        &self,
        actor: &str,
        project: &str,
        env: &str,
        input: &SegmentInput,
    ) -> Result<Segment> {
        let now = now_millis();
        let stamp = Stamp::new(actor, "segment.create", now);
        let mut tx = self.write().await?;
        let bumped = bump_env(&mut tx, project, env, now, self.guards()).await?;
        upsert_segment(&mut tx, &bumped, input, false, stamp).await?;
        let after = fetch_segment(&mut tx, bumped.id, &input.key).await?;
        let entry = stamp.entry(ResourceKind::Segment, &input.key, project, env);
        self.commit_env_write(tx, entry, None, Some(&after), &bumped)
            .await?;
        Ok(after)
    }

    /// Returns one segment.
    pub async fn get_segment(&self, project: &str, env: &str, key: &str) -> Result<Segment> {
        let mut tx = self.read().await?;
        let environment = super::projects::fetch_env(&mut tx, project, env).await?;
        let sql = format!(
            "SELECT {SEGMENT_COLUMNS} FROM {SEGMENT_FROM} WHERE p.key = $1 AND e.key = $2 AND s.key = $3"
        );
        match tx
            .fetch_optional(&sql, args![&environment.project_key, &environment.key, key])
            .await?
        {
            Some(row) => segment_from_row(&row),
            None => Err(not_found(ResourceKind::Segment, key)),
        }
    }

    /// Lists an environment's segments ordered by key.
    pub async fn list_segments(
        &self,
        project: &str,
        env: &str,
        page: &PageRequest,
    ) -> Result<Page<Segment>> {
        let limit = page.effective_limit();
        let mut tx = self.read().await?;
        super::projects::fetch_env(&mut tx, project, env).await?;
        let sql = format!(
            "SELECT {SEGMENT_COLUMNS} FROM {SEGMENT_FROM} WHERE p.key = $1 AND e.key = $2 \
             AND s.key > $3 ORDER BY s.key LIMIT $4"
        );
        let rows = tx
            .fetch_all(
                &sql,
                args![
                    project,
                    env,
                    page.cursor.clone().unwrap_or_default(),
                    limit + 1
                ],
            )
            .await?;
        page_from_rows(&rows, segment_from_row, limit, |s| s.key.clone())
    }

    /// Replaces a segment's fields (`input.key` names it); bumps its version and the
    /// environment's.
    pub async fn update_segment(
        &self,
        actor: &str,
        project: &str,
        env: &str,
        expected_version: i64,
        input: &SegmentInput,
    ) -> Result<Segment> {
        self.replace_segment(
            actor,
            "segment.update",
            project,
            env,
            expected_version,
            input,
        )
        .await
    }

    /// [`Storage::update_segment`], audited as `action`.
    pub(super) async fn replace_segment(
        &self,
        actor: &str,
        action: &str,
        project: &str,
        env: &str,
        expected_version: i64,
        input: &SegmentInput,
    ) -> Result<Segment> {
        let now = now_millis();
        let stamp = Stamp::new(actor, action, now);
        let mut tx = self.write().await?;
        let bumped = bump_env(&mut tx, project, env, now, self.guards()).await?;
        let before = fetch_segment(&mut tx, bumped.id, &input.key).await?;
        check_version(
            ResourceKind::Segment,
            &input.key,
            expected_version,
            before.version,
        )?;
        upsert_segment(&mut tx, &bumped, input, true, stamp).await?;
        let after = fetch_segment(&mut tx, bumped.id, &input.key).await?;
        let entry = stamp.entry(ResourceKind::Segment, &input.key, project, env);
        self.commit_env_write(tx, entry, Some(&before), Some(&after), &bumped)
            .await?;
        Ok(after)
    }

    /// Deletes a segment; bumps the environment.
    pub async fn delete_segment(
        &self,
        actor: &str,
        project: &str,
        env: &str,
        key: &str,
        expected_version: i64,
    ) -> Result<()> {
        let now = now_millis();
        let mut tx = self.write().await?;
        let bumped = bump_env(&mut tx, project, env, now, self.guards()).await?;
        let before = fetch_segment(&mut tx, bumped.id, key).await?;
        check_version(ResourceKind::Segment, key, expected_version, before.version)?;
        tx.execute(
            "DELETE FROM segments WHERE environment_id = $1 AND key = $2",
            args![bumped.id, key],
        )
        .await?;
        log_change(&mut tx, &bumped, ChangeKind::Segment, key, ChangeOp::Delete).await?;
        let stamp = Stamp::new(actor, "segment.delete", now);
        let entry = stamp.entry(ResourceKind::Segment, key, project, env);
        self.commit_env_write(tx, entry, Some(&before), None, &bumped)
            .await
    }
}

/// A segment as the engine's model (SCHEMA.md "Segment").
pub(super) fn canonical_segment(segment: &Segment) -> SegmentModel {
    SegmentModel {
        key: segment.key.clone(),
        included: segment.included.clone(),
        excluded: segment.excluded.clone(),
        rules: segment.rules.clone(),
        version: u64::try_from(segment.version).unwrap_or(0),
    }
}
