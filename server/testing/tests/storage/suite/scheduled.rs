//! Scheduled changes: stored, listed, due at their time, applied once, cancelled, failed.

use serde_json::json;
use vexil_server::storage::*;

use super::{ACTOR, assert_not_found, audit_of_kind, bool_flag, model, next_page, setup};

fn toggle_at(key: &str, run_at: Millis, on: bool) -> NewScheduledChange {
    NewScheduledChange {
        environment_key: "dev".into(),
        flag_key: key.into(),
        run_at,
        edit: ScheduledEdit::On(on),
        comment: "launch".into(),
    }
}

pub async fn scheduled_changes_apply_once(s: Storage) {
    setup(&s).await;
    s.create_flag(ACTOR, "p", &bool_flag("f")).await.unwrap();
    let now = now_millis();
    let soon = s
        .schedule_change(ACTOR, "p", &toggle_at("f", now + 60_000, true))
        .await
        .unwrap();
    assert_eq!(soon.state, ScheduleState::Pending);
    assert_eq!(soon.created_by, ACTOR);
    assert_eq!(soon.edit, ScheduledEdit::On(true));
    let replace = FlagConfiguration {
        on: true,
        off_variation: Some(1),
        targets: vec![model(json!({ "values": ["ann"], "variation": 1 }))],
        rules: vec![],
        fallthrough: Serve::variation(0),
        prerequisites: vec![],
        salt: None,
    };
    let later = s
        .schedule_change(
            ACTOR,
            "p",
            &NewScheduledChange {
                edit: ScheduledEdit::Configuration(Box::new(replace.clone())),
                ..toggle_at("f", now + 120_000, true)
            },
        )
        .await
        .unwrap();
    assert_not_found(
        s.schedule_change(ACTOR, "p", &toggle_at("missing", now, true))
            .await,
        ResourceKind::Flag,
    );

    // Nothing is due before its time; then in time order.
    assert!(s.due_scheduled_changes(now, 10).await.unwrap().is_empty());
    let due: Vec<i64> = s
        .due_scheduled_changes(now + 200_000, 10)
        .await
        .unwrap()
        .iter()
        .map(|x| x.id)
        .collect();
    assert_eq!(due, [soon.id, later.id]);

    // Applied once: a second attempt (another instance) writes nothing.
    let env_before = super::env_version(&s, "dev").await;
    let config = s.apply_scheduled_change(&soon).await.unwrap();
    assert!(config.configuration.on);
    assert_eq!(config.version, 2);
    match s.apply_scheduled_change(&soon).await {
        Err(StorageError::FailedPrecondition(_)) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(super::env_version(&s, "dev").await, env_before + 1);
    let applied = s.get_scheduled_change("p", soon.id).await.unwrap();
    assert_eq!(applied.state, ScheduleState::Applied);
    assert_eq!(applied.applied_version, Some(2));
    let newest = s
        .flag_version("p", "dev", "f", VersionAt::Number(2))
        .await
        .unwrap();
    assert_eq!(
        (newest.action.as_str(), newest.actor.as_str()),
        ("scheduled_change.apply", ACTOR)
    );

    // Cancelled: not due, and cannot be cancelled twice or applied.
    let cancelled = s
        .cancel_scheduled_change("bob", "p", later.id)
        .await
        .unwrap();
    assert_eq!(cancelled.state, ScheduleState::Cancelled);
    assert_eq!(cancelled.outcome, "cancelled by bob");
    assert!(matches!(
        s.cancel_scheduled_change("bob", "p", later.id).await,
        Err(StorageError::FailedPrecondition(_))
    ));
    assert!(matches!(
        s.apply_scheduled_change(&later).await,
        Err(StorageError::FailedPrecondition(_))
    ));
    assert!(
        s.due_scheduled_changes(now + 200_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_not_found(
        s.cancel_scheduled_change("bob", "other", later.id).await,
        ResourceKind::ScheduledChange,
    );

    // Failed: recorded once, with the reason.
    let doomed = s
        .schedule_change(ACTOR, "p", &toggle_at("f", now, false))
        .await
        .unwrap();
    assert!(
        s.fail_scheduled_change(&doomed, "no longer valid")
            .await
            .unwrap()
    );
    assert!(!s.fail_scheduled_change(&doomed, "again").await.unwrap());
    let failed = s.get_scheduled_change("p", doomed.id).await.unwrap();
    assert_eq!(failed.state, ScheduleState::Failed);
    assert_eq!(failed.outcome, "no longer valid");

    // Listed by id; pending only; of one flag.
    let all = s
        .list_scheduled_changes("p", "dev", None, false, &PageRequest::default())
        .await
        .unwrap();
    assert_eq!(all.items.len(), 3);
    let pending = s
        .list_scheduled_changes("p", "dev", Some("f"), true, &PageRequest::default())
        .await
        .unwrap();
    assert!(pending.items.is_empty());
    let first = s
        .list_scheduled_changes("p", "dev", None, false, &PageRequest::first(2))
        .await
        .unwrap();
    assert_eq!(first.items.len(), 2);
    let rest = s
        .list_scheduled_changes("p", "dev", None, false, &next_page(2, first.next_cursor))
        .await
        .unwrap();
    assert_eq!(rest.items[0].id, doomed.id);
    let audit = audit_of_kind(&s, "scheduled_change").await;
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "scheduled_change.fail",
            "scheduled_change.create",
            "scheduled_change.cancel",
            "scheduled_change.create",
            "scheduled_change.create"
        ]
    );

    // Deleting the flag deletes its scheduled changes.
    let flag = s.get_flag("p", "f").await.unwrap();
    s.delete_flag(ACTOR, "p", "f", flag.version).await.unwrap();
    assert!(
        s.list_scheduled_changes("p", "dev", None, false, &PageRequest::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

pub async fn a_lease_stays_with_its_holder_until_it_expires(s: Storage) {
    let (ttl, t) = (1_000, 50_000);
    assert!(
        s.hold_lease("watch", "a", t, ttl).await.unwrap(),
        "free: a takes it"
    );
    assert!(
        !s.hold_lease("watch", "b", t + 10, ttl).await.unwrap(),
        "a holds it"
    );
    assert!(
        s.hold_lease("watch", "a", t + 900, ttl).await.unwrap(),
        "a renews it"
    );
    assert!(
        !s.hold_lease("watch", "b", t + 1_500, ttl).await.unwrap(),
        "renewed: still a's at the first expiry"
    );
    assert!(
        s.hold_lease("other", "b", t, ttl).await.unwrap(),
        "leases are by name"
    );
    assert!(
        s.hold_lease("watch", "b", t + 1_900, ttl).await.unwrap(),
        "expired: b takes it over"
    );
    assert!(!s.hold_lease("watch", "a", t + 1_901, ttl).await.unwrap());
}
