//! Checking a change of an environment's ruleset before it is written: the domain rule the
//! admin and experiment services share.
//!
//! A write of a flag, a flag configuration or a segment is applied in memory, as a patch, to
//! the environment's whole compiled ruleset, and the engine judges the result. The write is
//! refused with `INVALID_ARGUMENT` when the result has a problem about the resource written,
//! or a problem the ruleset did not have before; nothing is stored then.
//!
//! The ruleset checked against is the one this instance serves ([`Hub`]): no read of the
//! store and no compilation of the unchanged flags, so a change costs the same in an
//! environment of ten flags as in one of ten thousand. The write then commits only if the
//! environment is still at the version checked against (the storage's guards). When another
//! change slipped in between, or the instance had not seen it yet, [`RulesetChecker::moved`]
//! brings the instance up to date and the caller checks and writes again, a few times,
//! before the call fails with `ABORTED`.
//!
//! Without a hub (a storage used on its own, as in some tests) the ruleset is loaded from
//! the store and compiled for each check.

use std::collections::HashSet;
use std::sync::Arc;

use tonic::Status;
use vexil_engine::{Problem, ResourceKind, Ruleset};

use crate::live::{Hub, Loaded};
use crate::storage::{self, FlagModel, RulesetData, SegmentModel, Storage, StorageError};

/// How many times a checked write is attempted when its environment keeps changing between
/// the check and the write.
const WRITE_ATTEMPTS: usize = 5;

/// Flags and segments a write puts into or takes out of one environment's ruleset.
#[derive(Debug, Clone, Default)]
pub struct RulesetChange {
    pub upsert_flags: Vec<FlagModel>,
    pub delete_flags: Vec<String>,
    pub upsert_segments: Vec<SegmentModel>,
    pub delete_segments: Vec<String>,
}

impl RulesetChange {
    pub fn upsert_flag(flag: FlagModel) -> RulesetChange {
        RulesetChange {
            upsert_flags: vec![flag],
            ..RulesetChange::default()
        }
    }

    pub fn delete_flag(key: &str) -> RulesetChange {
        RulesetChange {
            delete_flags: vec![key.to_owned()],
            ..RulesetChange::default()
        }
    }

    pub fn upsert_segment(segment: SegmentModel) -> RulesetChange {
        RulesetChange {
            upsert_segments: vec![segment],
            ..RulesetChange::default()
        }
    }

    pub fn delete_segment(key: &str) -> RulesetChange {
        RulesetChange {
            delete_segments: vec![key.to_owned()],
            ..RulesetChange::default()
        }
    }

    /// The change as the engine's patch, on top of `version`.
    fn patch(&self, version: u64) -> vexil_engine::Patch {
        // The models always serialize.
        vexil_engine::Patch {
            version: version.saturating_add(1),
            upsert_flags: self
                .upsert_flags
                .iter()
                .filter_map(|f| serde_json::to_value(f).ok())
                .collect(),
            delete_flags: self.delete_flags.clone(),
            upsert_segments: self
                .upsert_segments
                .iter()
                .filter_map(|s| serde_json::to_value(s).ok())
                .collect(),
            delete_segments: self.delete_segments.clone(),
        }
    }

    /// The flags and segments the change writes, whose problems always refuse it.
    fn written(&self) -> HashSet<(ResourceKind, &str)> {
        self.upsert_flags
            .iter()
            .map(|f| (ResourceKind::Flag, f.key.as_str()))
            .chain(
                self.upsert_segments
                    .iter()
                    .map(|s| (ResourceKind::Segment, s.key.as_str())),
            )
            .collect()
    }
}

/// The ruleset a change is checked against.
enum Base {
    /// The one this instance serves.
    Held(Arc<Loaded>),
    /// Loaded from the store for this check.
    Loaded { ruleset: Ruleset, version: i64 },
}

impl Base {
    fn ruleset(&self) -> &Ruleset {
        match self {
            Base::Held(loaded) => &loaded.ruleset,
            Base::Loaded { ruleset, .. } => ruleset,
        }
    }

    fn version(&self) -> i64 {
        match self {
            Base::Held(loaded) => loaded.version,
            Base::Loaded { version, .. } => *version,
        }
    }
}

/// Checks ruleset changes before they are written: see the module documentation.
#[derive(Debug, Clone)]
pub struct RulesetChecker {
    storage: Storage,
    hub: Option<Hub>,
}

impl RulesetChecker {
    pub fn new(storage: Storage, hub: Option<Hub>) -> RulesetChecker {
        RulesetChecker { storage, hub }
    }

    async fn base(&self, project: &str, env: &str) -> Result<Base, Status> {
        if let Some(hub) = &self.hub {
            let environment = hub.environment(project, env).await?;
            return Ok(Base::Held(environment.current()));
        }
        let data = self.storage.load_ruleset(project, env).await?;
        let version = i64::try_from(data.version).unwrap_or(i64::MAX);
        Ok(Base::Loaded {
            ruleset: Ruleset::from_model(data),
            version,
        })
    }

    fn counted(&self, how: &str) {
        if let Some(hub) = &self.hub {
            hub.metrics().ruleset_built(how, "validate");
        }
    }

    /// Checks `change` against the environment's ruleset; returns the environment version
    /// checked against, for the write's guards.
    pub async fn check(
        &self,
        project: &str,
        env: &str,
        change: &RulesetChange,
    ) -> Result<i64, Status> {
        let base = self.base(project, env).await?;
        self.judge(base.ruleset(), change)?;
        Ok(base.version())
    }

    /// Checks the change `plan` makes from the environment's current ruleset (`None`:
    /// nothing to change there); returns the environment version checked against.
    pub async fn check_with(
        &self,
        project: &str,
        env: &str,
        plan: impl FnOnce(&Ruleset) -> Option<RulesetChange>,
    ) -> Result<i64, Status> {
        let base = self.base(project, env).await?;
        if let Some(change) = plan(base.ruleset()) {
            self.judge(base.ruleset(), &change)?;
        }
        Ok(base.version())
    }

    /// Refuses `change` when, applied to `ruleset`, it has a problem about what it writes
    /// or one the ruleset did not have.
    fn judge(&self, ruleset: &Ruleset, change: &RulesetChange) -> Result<(), Status> {
        let before: HashSet<&Problem> = ruleset.problems().iter().collect();
        self.counted("patch");
        let after = ruleset.patched(&change.patch(ruleset.version()));
        let written = change.written();
        let refused: Vec<&Problem> = after
            .problems()
            .iter()
            .filter(|p| written.contains(&(p.resource, p.key.as_str())) || !before.contains(p))
            .collect();
        refuse(&refused)
    }

    /// Checks a ruleset on its own (a new flag, an imported file): refused when it has any
    /// problem.
    pub fn check_alone(&self, data: RulesetData) -> Result<(), Status> {
        self.counted("full");
        let compiled = Ruleset::from_model(data);
        refuse(&compiled.problems().iter().collect::<Vec<_>>())
    }

    /// Whether a write failed because an environment changed after it was checked (worth
    /// another attempt), rather than because the resource itself was stale. Before the next
    /// attempt, the instance catches up with the store, so that it checks against the
    /// environment's new version.
    pub async fn moved(&self, err: &StorageError, attempt: usize, project: &str) -> bool {
        let moved = attempt + 1 < WRITE_ATTEMPTS
            && matches!(
                err,
                StorageError::Conflict {
                    kind: storage::ResourceKind::Environment,
                    ..
                }
            );
        if moved && let Some(hub) = &self.hub {
            hub.refresh_project(project).await;
        }
        moved
    }
}

/// `INVALID_ARGUMENT` listing the problems, if any.
fn refuse(problems: &[&Problem]) -> Result<(), Status> {
    if problems.is_empty() {
        return Ok(());
    }
    let mut lines: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    lines.sort();
    lines.dedup();
    Err(Status::invalid_argument(format!(
        "invalid: {}",
        lines.join("; ")
    )))
}
