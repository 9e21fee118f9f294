//! History and rollback: every write records a version; versions read back by number and by
//! time; a rollback is a new, audited version; an environment rolls back as of a time.

use std::time::Duration;

use serde_json::json;
use vexil_server::storage::*;

use super::{
    ACTOR, assert_conflict, assert_not_found, bool_flag, flag_configuration, model, next_page,
    segment, setup,
};

fn string_flag(key: &str) -> NewFlag {
    NewFlag {
        key: key.into(),
        kind: ValueKind::String,
        variations: vec![json!("red"), json!("green"), json!("blue")],
        off_variation: Some(0),
        ..bool_flag(key)
    }
}

fn targeting(value: &str, variation: usize) -> FlagConfiguration {
    FlagConfiguration {
        on: true,
        off_variation: Some(0),
        targets: vec![model(json!({ "values": [value], "variation": variation }))],
        rules: vec![],
        fallthrough: Serve::variation(variation),
        prerequisites: vec![],
        salt: None,
    }
}

async fn versions(s: &Storage, env: &str, key: &str) -> Vec<(i64, String)> {
    s.list_flag_versions("p", env, key, &PageRequest::first(100))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|v| (v.version, v.action))
        .collect()
}

/// Replaces a string flag's project-level fields: its name, its third variation and whether
/// client-side SDKs see it.
async fn update_flag(
    s: &Storage,
    key: &str,
    expected: i64,
    name: &str,
    third: &str,
    client_side: bool,
) {
    let update = FlagUpdate {
        name: name.into(),
        description: String::new(),
        variations: vec![json!("red"), json!("green"), json!(third)],
        tags: vec![],
        client_side,
    };
    s.update_flag(ACTOR, "p", key, expected, &update)
        .await
        .unwrap();
}

/// Lets the clock move, so that writes on either side of a time are told apart.
async fn tick() {
    tokio::time::sleep(Duration::from_millis(5)).await;
}

pub async fn flag_history_and_rollback(s: Storage) {
    setup(&s).await;
    s.create_flag(ACTOR, "p", &string_flag("f")).await.unwrap();
    tick().await;
    s.toggle_flag(ACTOR, "p", "dev", "f", 1, true)
        .await
        .unwrap();
    tick().await;
    let configured = s
        .update_flag_config(ACTOR, "p", "dev", "f", 2, &targeting("bob", 2))
        .await
        .unwrap();
    tick().await;
    // A project-level change is a new version in every environment.
    update_flag(&s, "f", 1, "Colour", "blue", true).await;

    assert_eq!(
        versions(&s, "dev", "f").await,
        [
            (4, "flag.update".into()),
            (3, "flag_config.update".into()),
            (2, "flag_config.toggle".into()),
            (1, "flag.create".into()),
        ]
    );
    assert_eq!(
        versions(&s, "prod", "f").await,
        [(2, "flag.update".into()), (1, "flag.create".into())]
    );

    // Pages, newest first.
    let first = s
        .list_flag_versions("p", "dev", "f", &PageRequest::first(3))
        .await
        .unwrap();
    assert_eq!(first.items.len(), 3);
    let rest = s
        .list_flag_versions("p", "dev", "f", &next_page(3, first.next_cursor.clone()))
        .await
        .unwrap();
    assert_eq!(
        rest.items.iter().map(|v| v.version).collect::<Vec<_>>(),
        [1]
    );
    assert_eq!(rest.next_cursor, None);

    // A version holds what SDKs were served at it.
    let v3 = s
        .flag_version("p", "dev", "f", VersionAt::Number(3))
        .await
        .unwrap();
    assert_eq!(v3.configuration, configured.configuration);
    assert_eq!(v3.actor, ACTOR);
    assert!(!v3.client_side, "client_side changed only at version 4");
    assert_eq!(v3.model().version, 3);
    let v4 = s
        .flag_version("p", "dev", "f", VersionAt::Number(4))
        .await
        .unwrap();
    assert!(v4.client_side);
    // By time: the newest recorded at or before it.
    let at_v3 = s
        .flag_version("p", "dev", "f", VersionAt::Time(v3.recorded_at))
        .await
        .unwrap();
    assert_eq!(at_v3.version, 3);
    let v1 = s
        .flag_version("p", "dev", "f", VersionAt::Number(1))
        .await
        .unwrap();
    assert_not_found(
        s.flag_version("p", "dev", "f", VersionAt::Time(v1.recorded_at - 1))
            .await,
        ResourceKind::Version,
    );
    assert_not_found(
        s.flag_version("p", "dev", "f", VersionAt::Number(99)).await,
        ResourceKind::Version,
    );
    assert_not_found(
        s.flag_version("p", "dev", "nope", VersionAt::Number(1))
            .await,
        ResourceKind::Flag,
    );
    assert_not_found(
        s.list_flag_versions("p", "qa", "f", &PageRequest::default())
            .await,
        ResourceKind::Environment,
    );

    // Rolling back to version 2 writes version 5 with version 2's configuration.
    let v2 = s
        .flag_version("p", "dev", "f", VersionAt::Number(2))
        .await
        .unwrap();
    let changes_before = super::all_changes(&s, "dev").await.len();
    let restored = s.rollback_flag(ACTOR, "p", "dev", 4, &v2).await.unwrap();
    assert_eq!(restored.version, 5);
    assert_eq!(restored.configuration, v2.configuration);
    assert_eq!(s.get_flag_config("p", "dev", "f").await.unwrap(), restored);
    assert_eq!(
        super::all_changes(&s, "dev").await.len(),
        changes_before + 1,
        "SDKs are told"
    );
    assert_eq!(
        versions(&s, "dev", "f").await[0],
        (5, "flag_config.rollback".into())
    );
    let audit = s
        .list_audit(
            &AuditFilter {
                resource_key: Some("f".into()),
                ..AuditFilter::default()
            },
            &PageRequest::first(1),
        )
        .await
        .unwrap();
    assert_eq!(audit.items[0].action, "flag_config.rollback");

    // A stale rollback writes nothing.
    assert_conflict(s.rollback_flag(ACTOR, "p", "dev", 4, &v3).await);
    assert_eq!(versions(&s, "dev", "f").await.len(), 5);

    // Once the shared variations change, a configuration alone cannot bring back what was
    // served: refused, nothing written.
    update_flag(&s, "f", 2, "Colour", "cyan", true).await;
    match s.rollback_flag(ACTOR, "p", "dev", 6, &v3).await {
        Err(StorageError::FailedPrecondition(message)) => {
            assert!(message.contains("variations"), "{message}")
        }
        other => panic!("expected a failed precondition, got {other:?}"),
    }
    assert_eq!(versions(&s, "dev", "f").await.len(), 6);

    // Archiving keeps the history (as a version); deleting the flag deletes it.
    s.set_flag_archived(ACTOR, "p", "f", 3, true).await.unwrap();
    let archived = s
        .flag_version("p", "dev", "f", VersionAt::Number(7))
        .await
        .unwrap();
    assert!(archived.archived);
    assert_eq!(archived.action, "flag.archive");
    s.delete_flag(ACTOR, "p", "f", 4).await.unwrap();
    s.create_flag(ACTOR, "p", &string_flag("f")).await.unwrap();
    assert_eq!(versions(&s, "dev", "f").await, [(1, "flag.create".into())]);

    // An environment created later starts the history of every flag there.
    s.create_environment(ACTOR, "p", &super::env("qa"))
        .await
        .unwrap();
    assert_eq!(
        versions(&s, "qa", "f").await,
        [(1, "environment.create".into())]
    );
}

pub async fn segment_history_and_rollback(s: Storage) {
    setup(&s).await;
    s.create_segment(ACTOR, "p", "dev", &segment("beta", &["ann"]))
        .await
        .unwrap();
    let mut wider = segment("beta", &["ann", "bob"]);
    wider.description = "wider".into();
    s.update_segment(ACTOR, "p", "dev", 1, &wider)
        .await
        .unwrap();
    let page = s
        .list_segment_versions("p", "dev", "beta", &PageRequest::default())
        .await
        .unwrap();
    let listed: Vec<(i64, &str)> = page
        .items
        .iter()
        .map(|v| (v.version, v.action.as_str()))
        .collect();
    assert_eq!(listed, [(2, "segment.update"), (1, "segment.create")]);
    assert_eq!(page.items[0].segment.description, "wider");

    let v1 = s
        .segment_version("p", "dev", "beta", VersionAt::Number(1))
        .await
        .unwrap();
    let restored = s.rollback_segment(ACTOR, "p", "dev", 2, &v1).await.unwrap();
    assert_eq!(restored.version, 3);
    assert_eq!(restored.included, v1.segment.included);
    assert_eq!(restored.description, "");
    assert_conflict(s.rollback_segment(ACTOR, "p", "dev", 2, &v1).await);
    let newest = s
        .segment_version("p", "dev", "beta", VersionAt::Number(3))
        .await
        .unwrap();
    assert_eq!(newest.action, "segment.rollback");
    assert_not_found(
        s.segment_version("p", "dev", "gone", VersionAt::Number(1))
            .await,
        ResourceKind::Segment,
    );
}

pub async fn environment_rolls_back_as_of_a_time(s: Storage) {
    setup(&s).await;
    for key in ["a", "b", "untouched"] {
        s.create_flag(ACTOR, "p", &string_flag(key)).await.unwrap();
    }
    s.update_flag_config(ACTOR, "p", "dev", "a", 1, &targeting("ann", 1))
        .await
        .unwrap();
    s.create_segment(ACTOR, "p", "dev", &segment("beta", &["ann"]))
        .await
        .unwrap();
    let then_a = s.get_flag_config("p", "dev", "a").await.unwrap();
    tick().await;
    let at = now_millis();
    tick().await;

    // After `at`: a and the segment change, b's shared variations change, a flag and a
    // segment are created, and prod changes (it must stay as it is).
    s.update_flag_config(ACTOR, "p", "dev", "a", 2, &targeting("bob", 2))
        .await
        .unwrap();
    s.update_segment(ACTOR, "p", "dev", 1, &segment("beta", &["ann", "bob"]))
        .await
        .unwrap();
    update_flag(&s, "b", 1, "", "cyan", false).await;
    s.create_flag(ACTOR, "p", &string_flag("later"))
        .await
        .unwrap();
    s.create_segment(ACTOR, "p", "dev", &segment("later", &["cy"]))
        .await
        .unwrap();
    s.toggle_flag(ACTOR, "p", "prod", "a", 1, true)
        .await
        .unwrap();
    // A project-level change that keeps the variations: untouched's configuration is the
    // same as at `at`, so it is not restored although its version moved.
    update_flag(&s, "untouched", 1, "renamed", "blue", false).await;

    let plan = s.environment_as_of("p", "dev", at).await.unwrap();
    let flags: Vec<&str> = plan.flags.iter().map(|f| f.flag_key.as_str()).collect();
    assert_eq!(flags, ["a"]);
    assert_eq!(plan.flags[0].configuration, then_a.configuration);
    let segments: Vec<&str> = plan
        .segments
        .iter()
        .map(|s| s.segment.key.as_str())
        .collect();
    assert_eq!(segments, ["beta"]);
    let mut skipped: Vec<(ResourceKind, &str)> = plan
        .skipped
        .iter()
        .map(|s| (s.kind, s.key.as_str()))
        .collect();
    skipped.sort_by_key(|(_, key)| *key);
    assert_eq!(
        skipped,
        [
            (ResourceKind::Flag, "b"),
            (ResourceKind::Flag, "later"),
            (ResourceKind::Segment, "later"),
        ]
    );
    let env_before = super::env_version(&s, "dev").await;
    assert_eq!(plan.version, env_before);

    let version = s.rollback_environment(ACTOR, &plan).await.unwrap();
    assert_eq!(
        version,
        env_before + 1,
        "one write, one environment version"
    );
    assert_eq!(
        flag_configuration(&s, "dev", "a").await,
        then_a.configuration
    );
    let beta = s.get_segment("p", "dev", "beta").await.unwrap();
    assert_eq!(beta.included, segment("beta", &["ann"]).included);
    assert!(s.get_segment("p", "dev", "later").await.is_ok());
    assert!(
        flag_configuration(&s, "prod", "a").await.on,
        "another environment is left as it is"
    );
    assert_eq!(
        versions(&s, "dev", "a").await[0].1,
        "environment.rollback",
        "the restored flag has a new version"
    );

    // Rolled back already: nothing differs now. A plan read before a change is refused.
    let again = s.environment_as_of("p", "dev", at).await.unwrap();
    assert!(again.is_empty(), "{again:?}");
    assert_conflict(s.rollback_environment(ACTOR, &plan).await);
    assert_eq!(super::env_version(&s, "dev").await, version);
}
