//! Reading the audit log (entries are written by each change, in its transaction).

use super::db::Row;
use super::{AuditEntry, AuditFilter, Page, PageRequest, QueryBuilder, Result, Storage, from_text};

fn entry_from_row(row: &Row) -> Result<AuditEntry> {
    let json = |index: usize, what: &str| -> Result<Option<serde_json::Value>> {
        row.get::<Option<String>>(index)?
            .map(|text| from_text(&text, what))
            .transpose()
    };
    Ok(AuditEntry {
        id: row.get(0)?,
        at: row.get(1)?,
        actor: row.get(2)?,
        action: row.get(3)?,
        resource_kind: row.get(4)?,
        resource_key: row.get(5)?,
        project_key: row.get(6)?,
        environment_key: row.get(7)?,
        before: json(8, "audit before")?,
        after: json(9, "audit after")?,
    })
}

impl Storage {
    /// Lists audit entries, newest first, that match every filter set.
    pub async fn list_audit(
        &self,
        filter: &AuditFilter,
        page: &PageRequest,
    ) -> Result<Page<AuditEntry>> {
        let limit = page.effective_limit();
        let mut q = QueryBuilder::new(
            "SELECT id, at, actor, action, resource_kind, resource_key, project_key, \
             environment_key, before_json, after_json FROM audit_log WHERE 1 = 1",
        );
        if page.cursor.is_some() {
            let c = q.arg(page.number_cursor(i64::MAX)?);
            q.push(&format!(" AND id < {c}"));
        }
        for (column, value) in [
            ("project_key", &filter.project_key),
            ("environment_key", &filter.environment_key),
            ("resource_kind", &filter.resource_kind),
            ("resource_key", &filter.resource_key),
            ("actor", &filter.actor),
        ] {
            if let Some(value) = value {
                let v = q.arg(value.as_str());
                q.push(&format!(" AND {column} = {v}"));
            }
        }
        if let Some(since) = filter.since {
            let s = q.arg(since);
            q.push(&format!(" AND at >= {s}"));
        }
        if let Some(until) = filter.until {
            let u = q.arg(until);
            q.push(&format!(" AND at < {u}"));
        }
        let l = q.arg(limit + 1);
        q.push(&format!(" ORDER BY id DESC LIMIT {l}"));
        let mut tx = self.read().await?;
        let rows = tx.fetch_all(&q.sql, q.args).await?;
        super::projects::page_from_rows(&rows, entry_from_row, limit, |e| e.id.to_string())
    }
}
