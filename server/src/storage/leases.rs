//! Leases: work one instance does for the whole fleet, and keeps doing while it lives.

use super::db::args;
use super::{Millis, Result, Storage};

impl Storage {
    /// Takes the lease `name` for `holder`, or renews it when `holder` has it, until
    /// `now + ttl`; returns whether `holder` holds it now. Another holder's lease is taken
    /// over only once expired, so the work stays with one instance while it renews in time.
    pub async fn hold_lease(
        &self,
        name: &str,
        holder: &str,
        now: Millis,
        ttl: Millis,
    ) -> Result<bool> {
        let mut tx = self.write().await?;
        let held = tx
            .execute(
                "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE \
                 SET holder = excluded.holder, expires_at = excluded.expires_at \
                 WHERE leases.holder = excluded.holder OR leases.expires_at <= $4",
                args![name, holder, now.saturating_add(ttl), now],
            )
            .await?;
        tx.commit().await?;
        Ok(held == 1)
    }
}
