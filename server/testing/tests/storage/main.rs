//! One storage test suite, run against both engines: every test in `suite.rs` runs once on
//! SQLite (a fresh file in a temporary folder) and once on Postgres (a fresh database on the
//! server named by `VEXIL_TEST_DATABASE_URL`, dropped afterwards).
//!
//! Postgres is not optional: without `VEXIL_TEST_DATABASE_URL` the Postgres tests fail,
//! unless `VEXIL_TEST_SKIP_POSTGRES=1` says to skip them. `scripts/services.sh start` starts
//! a Postgres and prints the variable to export.

mod suite;

/// Instantiates every listed test of `suite` for both engines.
macro_rules! storage_suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    vexil_testing::TestDatabase::sqlite().run(crate::suite::$name).await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(db) = vexil_testing::TestDatabase::postgres().await {
                        db.run(crate::suite::$name).await;
                    }
                }
            )*
        }
    };
}

storage_suite!(
    projects_crud_and_pagination,
    environments_crud,
    duplicate_keys_are_already_exists,
    flag_lifecycle,
    flag_configuration_and_toggle,
    environment_versions_bump_with_changes,
    stale_versions_conflict_and_write_nothing,
    failed_writes_leave_no_audit_entry,
    audit_log_records_and_filters,
    change_log_since_version,
    patches_collapse_changes,
    ruleset_json_merges_flag_and_config,
    export_then_import_round_trips,
    malformed_import_writes_nothing,
    list_flags_filters_and_pages,
    segments_crud,
    sdk_keys_lookup_revoke_rotate,
    admin_tokens_and_roles,
    change_notices_follow_commits,
    concurrent_writes_get_distinct_versions,
    guarded_writes_fail_when_the_environment_moved,
    event_batches_are_stored_once,
    large_and_concurrent_event_batches,
    experiment_rollups_match_their_definition,
    experiment_moments_hold_when_the_mean_dwarfs_the_spread,
    experiment_alerts_are_raised_once,
    experiment_rollups_under_concurrent_writes,
    erasing_a_context_removes_it_from_events_and_results,
    retention_deletes_old_raw_events_and_keeps_results,
    flag_history_and_rollback,
    segment_history_and_rollback,
    environment_rolls_back_as_of_a_time,
    scheduled_changes_apply_once,
    ramps_advance_on_a_clock_the_test_controls,
    guarded_ramps_roll_back_once,
    a_lease_stays_with_its_holder_until_it_expires,
);

/// A context erased from every environment is found in no row of any table afterwards
/// (read straight from the database, every column as text).
async fn erased_context_is_in_no_table(db: vexil_testing::TestDatabase) {
    let s = db.open().await;
    suite::store_events_of("erase.me@example.com", &s).await;
    let before = db.rows_mentioning("erase.me@example.com").await;
    for table in [
        "exposures",
        "track_events",
        "experiment_units",
        "experiment_unit_events",
    ] {
        assert!(
            before.contains_key(table),
            "{table} holds the context first: {before:?}"
        );
    }
    s.erase_context("alice", "p", None, "user", "erase.me@example.com")
        .await
        .unwrap();
    s.compact_analytics(std::time::Duration::MAX).await.unwrap();
    s.close().await;
    let after = db.rows_mentioning("erase.me@example.com").await;
    db.remove().await;
    assert!(after.is_empty(), "left after erasure: {after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erased_context_is_in_no_sqlite_table() {
    erased_context_is_in_no_table(vexil_testing::TestDatabase::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erased_context_is_in_no_postgres_table() {
    if let Some(db) = vexil_testing::TestDatabase::postgres().await {
        erased_context_is_in_no_table(db).await;
    }
}
