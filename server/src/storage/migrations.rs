//! The schema's migrations, one source for both engines.
//!
//! Each step is one SQL file in `server/migrations/`, written for Postgres. The SQLite text of
//! a step is the same file with the few rewrites of [`SQLITE_REWRITES`] (identity columns,
//! boolean and float spellings), so that the two engines cannot drift apart. Both texts are
//! exactly those the engines have recorded since each step was first applied: sqlx keeps a
//! checksum of every applied migration and refuses to start when a text changes, and a test
//! below pins them.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

/// (version, description, Postgres text) of every step, in order. A new step is a new file
/// here; an applied step's text never changes.
const STEPS: &[(i64, &str, &str)] = &[
    (
        1,
        "initial",
        include_str!("../../migrations/0001_initial.sql"),
    ),
    (
        2,
        "events",
        include_str!("../../migrations/0002_events.sql"),
    ),
    (
        3,
        "experiments",
        include_str!("../../migrations/0003_experiments.sql"),
    ),
    (
        4,
        "experiment rollups",
        include_str!("../../migrations/0004_experiment_rollups.sql"),
    ),
    (
        5,
        "allowed origins",
        include_str!("../../migrations/0005_allowed_origins.sql"),
    ),
    (
        6,
        "event retention",
        include_str!("../../migrations/0006_event_retention.sql"),
    ),
    (
        7,
        "experiment alerts",
        include_str!("../../migrations/0007_experiment_alerts.sql"),
    ),
    (
        8,
        "ratio metrics",
        include_str!("../../migrations/0008_ratio_metrics.sql"),
    ),
    (
        9,
        "quantile metrics",
        include_str!("../../migrations/0009_quantile_metrics.sql"),
    ),
    (
        10,
        "history",
        include_str!("../../migrations/0010_history.sql"),
    ),
    (
        11,
        "scheduled changes",
        include_str!("../../migrations/0011_scheduled_changes.sql"),
    ),
    (
        12,
        "rollout ramps",
        include_str!("../../migrations/0012_rollout_ramps.sql"),
    ),
    (
        13,
        "guarded ramps",
        include_str!("../../migrations/0013_guarded_ramps.sql"),
    ),
    (
        14,
        "leases",
        include_str!("../../migrations/0014_leases.sql"),
    ),
];

/// From the Postgres text to the SQLite one, applied in this order. SQLite's rowid alias is
/// `INTEGER PRIMARY KEY` (with `AUTOINCREMENT` so that ids are never reused, like an identity);
/// it has no `FALSE` before 3.23 and spells floats `REAL`. The columns' alignment is part of
/// the recorded text, hence the padded forms.
const SQLITE_REWRITES: &[(&str, &str)] = &[
    ("(Postgres)", "(SQLite)"),
    (
        "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
        "INTEGER PRIMARY KEY AUTOINCREMENT",
    ),
    (
        "BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
        "INTEGER PRIMARY KEY AUTOINCREMENT",
    ),
    (
        "experiment_id BIGINT NOT NULL REFERENCES experiments (id)",
        "experiment_id INTEGER NOT NULL REFERENCES experiments (id)",
    ),
    ("DEFAULT FALSE", "DEFAULT 0"),
    ("DOUBLE PRECISION NOT NULL,", "REAL   NOT NULL,"),
    ("DOUBLE PRECISION,", "REAL,"),
];

/// The database engine a migration text is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    fn text(self, postgres: &'static str) -> Cow<'static, str> {
        match self {
            Dialect::Postgres => Cow::Borrowed(postgres),
            Dialect::Sqlite => Cow::Owned(
                SQLITE_REWRITES
                    .iter()
                    .fold(postgres.to_owned(), |text, (from, to)| {
                        text.replace(from, to)
                    }),
            ),
        }
    }

    fn migrations(self) -> Vec<Migration> {
        STEPS
            .iter()
            .map(|&(version, description, postgres)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    self.text(postgres),
                    false,
                )
            })
            .collect()
    }

    /// The migrator of this engine.
    pub(super) async fn migrator(self) -> Result<Migrator, sqlx::migrate::MigrateError> {
        Migrator::new(self).await
    }
}

impl MigrationSource<'static> for Dialect {
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 'static>> {
        Box::pin(async move { Ok(self.migrations()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SHA-384 of every step's text as databases recorded it when it was applied (Postgres,
    /// SQLite). Changing an applied step's text would stop every existing database from
    /// starting.
    const RECORDED: &[(&str, &str)] = &[
        (
            "b4b8b33c131a508d7a58aa2970fb5dbb006b6e03a84d1d9cded42001db71b4753a151f87e32e37c332976414b696425f",
            "a1c0a2ba5f380a8cc07da2d0e1f1412e442fe8b0efcd6f9fd0b6d1fd4ca35fe3ceea5c8bd081d3cc36f948faa611d496",
        ),
        (
            "93f1694f0216e46dfc1daade624310269317180a02baf078c5947b0eb52f4f357974e1958cc8a2160c9f6719391c3a07",
            "eb1ca19926143d94ada7bfbf6f859530b8c5119ae9abbafe07c18f3562122b31fe6c8bc437577d37e15c313f54590e77",
        ),
        (
            "b827907655eef7261cff1c679eb49422758b0a44237afee346e910a1bfd6d5283bca32cfc71baa4795b01fa040760000",
            "34061f5139c71df0a845818dc50029a24d0df6ade20853bedd8c8b84c1463815cd75b4c7bd13466e8f77218c6886783c",
        ),
        (
            "46e072c2f59bfdf42c485fe671260755985b8bf58b787676e2ac86f832fb511934b1d7fee9f288fed690c42bcd33b126",
            "d5d7b64100abc0a1c8bbb77bd7185063655fe25014f8f76260db3a742d0fe2ade77f3ebc92769935ce0f9ebec38e870f",
        ),
        (
            "46b77505286d8e79bba71c2f7729b6a976593ee4184d30a1ee2b4e50205f87daaf1b1065faefc4a98c2ed9eb40ae0896",
            "46b77505286d8e79bba71c2f7729b6a976593ee4184d30a1ee2b4e50205f87daaf1b1065faefc4a98c2ed9eb40ae0896",
        ),
        (
            "c6dcbab42c135270d317177e054e29d0ed54ca55e247413991ed080786ce1fafc4abf659ee48478f25fc72e4fc6e15d4",
            "c6dcbab42c135270d317177e054e29d0ed54ca55e247413991ed080786ce1fafc4abf659ee48478f25fc72e4fc6e15d4",
        ),
        (
            "b0b870b9f2cf4b7c849335fcec500ecba19b050d0d7ca522646c561cf832299c16cfb536ae4a55891dbba72629f190e2",
            "dedf90888053158b440cea5abb970814116234a84a2401d81d7c40f9864f2fad702eaec45351dde8735b0ee76c18c701",
        ),
        (
            "6bbc90fd7b3a141e888e1a4237e82306275de0048e5a196c2464d8687fe95ca5d2e564f766455ca80c3606c48356c76e",
            "6bbc90fd7b3a141e888e1a4237e82306275de0048e5a196c2464d8687fe95ca5d2e564f766455ca80c3606c48356c76e",
        ),
        (
            "d545ff2536502d439ac7fd3e791698145a8dc8f61626199fc3fff3c4daef96fcb785f5be71108278cebea2c712397083",
            "d545ff2536502d439ac7fd3e791698145a8dc8f61626199fc3fff3c4daef96fcb785f5be71108278cebea2c712397083",
        ),
        (
            "05c134c8860a4e92550169ada06723f7eda05339589363289ea32e4745c4f99d50a0c57a39e88a4562db49934a4687a6",
            "05c134c8860a4e92550169ada06723f7eda05339589363289ea32e4745c4f99d50a0c57a39e88a4562db49934a4687a6",
        ),
        (
            "48417c9c8a9780c4460052fdecc314327b3dd525e199e9c27848402f0e441680f573af430b51f5c42127819c8b5c9c3a",
            "98995524d24d93b77bfe245d5c555c6014765eb562c07f06b43017feb393d5d6eed1007d5252f32b659c78d959d0e17e",
        ),
        (
            "08e17a92652dc02c0dc3c7f84fe00f7e28ea9f52d95888515f562f3cf2911a24e9909d7a150c4a3cfc6a6cba364ddf21",
            "c6fcd254d3b95bc6c87f00a582b826942cf33c62cc971c2c6575da10ef2eabe6364b9bcfafb0547b2488a32bf87ad898",
        ),
        (
            "ddbb16f387bcdd042d59b228fc49a19c8b36a42e43f8862f5e0ef9cf3d2f2fd04fc4e37d14eb8017ae039aa8c3f8990d",
            "ddbb16f387bcdd042d59b228fc49a19c8b36a42e43f8862f5e0ef9cf3d2f2fd04fc4e37d14eb8017ae039aa8c3f8990d",
        ),
        (
            "a2bddb74ccaa56d456b531608b7a77c200186dd1d2b2eb46990097cdca78998ebdca40832488768a2ec50ee0635f8fee",
            "a2bddb74ccaa56d456b531608b7a77c200186dd1d2b2eb46990097cdca78998ebdca40832488768a2ec50ee0635f8fee",
        ),
    ];

    #[test]
    fn every_applied_step_keeps_the_text_databases_recorded() {
        let postgres = Dialect::Postgres.migrations();
        let sqlite = Dialect::Sqlite.migrations();
        for (i, (want_postgres, want_sqlite)) in RECORDED.iter().enumerate() {
            assert_eq!(
                hex::encode(&postgres[i].checksum),
                *want_postgres,
                "Postgres step {}",
                i + 1
            );
            assert_eq!(
                hex::encode(&sqlite[i].checksum),
                *want_sqlite,
                "SQLite step {}",
                i + 1
            );
        }
        // Versions are consecutive from 1.
        for (i, m) in postgres.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1);
        }
    }

    #[test]
    fn every_rewrite_is_used_and_nothing_postgres_only_reaches_sqlite() {
        let all: String = STEPS.iter().map(|step| step.2).collect();
        for (from, _) in SQLITE_REWRITES {
            assert!(all.contains(from), "unused rewrite {from:?}");
        }
        for m in Dialect::Sqlite.migrations() {
            for postgres_only in ["GENERATED ALWAYS", "(Postgres)", "DEFAULT FALSE"] {
                assert!(
                    !m.sql.contains(postgres_only),
                    "step {}: {postgres_only}",
                    m.version
                );
            }
        }
    }
}
