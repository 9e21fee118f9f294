//! Progressive rollouts on a clock the test controls: started, advanced step by step when
//! due (once), paused and resumed, completed, cancelled; a context in at one step stays in
//! at every later one; a guarded ramp's looks are claimed once per interval, and its
//! rollback is one write.

use serde_json::json;
use vexil_engine::{Context, Ruleset, SingleContext};
use vexil_server::storage::*;

use super::{ACTOR, bool_flag, flag_configuration, model, setup};

const HOUR: Millis = 3_600_000;
/// The clock: a fixed start, so that every time in the test is exact.
const T0: Millis = 1_800_000_000_000;

fn ramp_of(key: &str, percents: &[f64]) -> NewRamp {
    NewRamp {
        environment_key: "dev".into(),
        flag_key: key.into(),
        // bool_flag: [true, false]; roll out true (0), others keep false (1).
        variation: 0,
        baseline: 1,
        steps: percents
            .iter()
            .map(|&percent| RampStep {
                percent,
                duration_ms: HOUR,
            })
            .collect(),
        guard: None,
    }
}

fn assert_invalid<T: std::fmt::Debug>(result: Result<T>, field: &str) {
    match result {
        Err(StorageError::InvalidArgument(message)) => {
            assert!(message.starts_with(field), "{field}: {message}")
        }
        other => panic!("expected invalid {field}, got {other:?}"),
    }
}

/// Which of `users` the flag's fallthrough serves the rolled-out variation (true) at the
/// flag's version `version`, read back from its history.
async fn users_in(s: &Storage, version: i64, users: &[Context]) -> Vec<bool> {
    let flag = s
        .flag_version("p", "dev", "f", VersionAt::Number(version))
        .await
        .unwrap()
        .model();
    let ruleset = Ruleset::from_model(RulesetData {
        version: 1,
        flags: vec![flag],
        segments: vec![],
    });
    users
        .iter()
        .map(|u| ruleset.served_value("f", u, ValueKind::Bool) == Some(&json!(true)))
        .collect()
}

pub async fn ramps_advance_on_a_clock_the_test_controls(s: Storage) {
    setup(&s).await;
    s.create_flag(ACTOR, "p", &bool_flag("f")).await.unwrap();
    // A target the ramp must leave alone.
    let mut configured = flag_configuration(&s, "dev", "f").await;
    configured.on = true;
    configured.targets = vec![model(json!({ "values": ["vip"], "variation": 0 }))];
    s.update_flag_config(ACTOR, "p", "dev", "f", 1, &configured)
        .await
        .unwrap();

    for (steps, field) in [
        (vec![], "steps:"),
        (vec![5.0, 1.0, 100.0], "steps[1].percent"),
        (vec![5.0, 50.0], "steps[1].percent: the last step"),
        (vec![0.0, 100.0], "steps[0].percent"),
    ] {
        assert_invalid(
            s.start_ramp(ACTOR, "p", &ramp_of("f", &steps), 2, T0).await,
            field,
        );
    }
    assert_invalid(
        s.start_ramp(
            ACTOR,
            "p",
            &NewRamp {
                baseline: 0,
                ..ramp_of("f", &[100.0])
            },
            2,
            T0,
        )
        .await,
        "baseline:",
    );

    let (ramp, config) = s
        .start_ramp(ACTOR, "p", &ramp_of("f", &[1.0, 5.0, 25.0, 100.0]), 2, T0)
        .await
        .unwrap();
    assert_eq!(ramp.state, RampState::Running);
    assert_eq!(config.configuration.fallthrough, serve_at(0, 1, 1.0, None));
    assert_eq!(config.configuration.targets, configured.targets);
    assert_eq!(ramp.next_step_at(), Some(T0 + HOUR));
    match s
        .start_ramp(ACTOR, "p", &ramp_of("f", &[100.0]), config.version, T0)
        .await
    {
        Err(StorageError::AlreadyExists { kind, .. }) => assert_eq!(kind, ResourceKind::Ramp),
        other => panic!("one ramp at a time: {other:?}"),
    }

    // Due exactly at the end of its step, and advanced once.
    assert!(s.due_ramps(T0 + HOUR - 1).await.unwrap().is_empty());
    let due = s.due_ramps(T0 + HOUR).await.unwrap();
    assert_eq!(due.len(), 1);
    let (step1, config1) = s.advance_ramp(&due[0], T0 + HOUR).await.unwrap();
    assert_eq!(step1.step, 1);
    assert_eq!(config1.configuration.fallthrough, serve_at(0, 1, 5.0, None));
    assert!(matches!(
        s.advance_ramp(&due[0], T0 + HOUR).await,
        Err(StorageError::FailedPrecondition(_))
    ));

    // Paused half-way through the step: nothing is due, however late; resumed, the step
    // has the half it had left.
    let paused = s
        .move_ramp(ACTOR, "p", ramp.id, RampMove::Pause, T0 + HOUR + HOUR / 2)
        .await
        .unwrap();
    assert_eq!(paused.paused_remaining, Some(HOUR / 2));
    assert!(s.due_ramps(T0 + 100 * HOUR).await.unwrap().is_empty());
    assert!(matches!(
        s.advance_ramp(&step1, T0 + 2 * HOUR).await,
        Err(StorageError::FailedPrecondition(_))
    ));
    let resumed = s
        .move_ramp(ACTOR, "p", ramp.id, RampMove::Resume, T0 + 5 * HOUR)
        .await
        .unwrap();
    assert_eq!(resumed.next_step_at(), Some(T0 + 5 * HOUR + HOUR / 2));
    assert!(matches!(
        s.move_ramp(ACTOR, "p", ramp.id, RampMove::Resume, T0 + 5 * HOUR)
            .await,
        Err(StorageError::FailedPrecondition(_))
    ));
    let (step2, _) = s
        .advance_ramp(&resumed, T0 + 5 * HOUR + HOUR / 2)
        .await
        .unwrap();
    let (done, last) = s.advance_ramp(&step2, T0 + 7 * HOUR).await.unwrap();
    assert_eq!(done.state, RampState::Completed);
    assert_eq!(last.configuration.fallthrough, Serve::variation(0));
    assert_eq!(done.next_step_at(), None);
    assert!(s.due_ramps(T0 + 100 * HOUR).await.unwrap().is_empty());
    assert!(matches!(
        s.move_ramp(ACTOR, "p", ramp.id, RampMove::Cancel, T0 + 8 * HOUR)
            .await,
        Err(StorageError::FailedPrecondition(_))
    ));

    // Every step is a version; a context in at one step is in at every later one.
    let history = s
        .list_flag_versions("p", "dev", "f", &PageRequest::default())
        .await
        .unwrap();
    let actions: Vec<&str> = history.items.iter().map(|v| v.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "ramp.advance",
            "ramp.advance",
            "ramp.advance",
            "ramp.start",
            "flag_config.update",
            "flag.create"
        ]
    );
    let users: Vec<Context> = (0..2000)
        .map(|i| Context::from(SingleContext::new("user", &format!("user-{i}")).unwrap()))
        .collect();
    let mut previous = vec![false; users.len()];
    let mut counts = Vec::new();
    for version in 3..=6 {
        let now_in = users_in(&s, version, &users).await;
        for (i, (before, now)) in previous.iter().zip(&now_in).enumerate() {
            assert!(
                !before || *now,
                "user-{i} left the rollout at version {version}"
            );
        }
        counts.push(now_in.iter().filter(|&&x| x).count());
        previous = now_in;
    }
    // 1 %, 5 %, 25 %, 100 % of 2,000 contexts, within sampling error.
    assert!(
        counts[0] < 60 && counts[1] > 50 && counts[1] < 160,
        "{counts:?}"
    );
    assert!(counts[2] > 400 && counts[2] < 600, "{counts:?}");
    assert_eq!(counts[3], 2000);

    // Cancelled: the flag stays where the ramp left it, and a new ramp may start.
    s.create_flag(ACTOR, "p", &bool_flag("g")).await.unwrap();
    let (other, _) = s
        .start_ramp(ACTOR, "p", &ramp_of("g", &[10.0, 100.0]), 1, T0)
        .await
        .unwrap();
    let cancelled = s
        .move_ramp(ACTOR, "p", other.id, RampMove::Cancel, T0 + 1)
        .await
        .unwrap();
    assert_eq!(cancelled.state, RampState::Cancelled);
    assert_eq!(
        flag_configuration(&s, "dev", "g").await.fallthrough,
        serve_at(0, 1, 10.0, None)
    );
    assert!(s.due_ramps(T0 + 100 * HOUR).await.unwrap().is_empty());
    // A single step is 100 % at once: completed as it starts.
    let (at_once, config) = s
        .start_ramp(ACTOR, "p", &ramp_of("g", &[100.0]), 2, T0 + 2)
        .await
        .unwrap();
    assert_eq!(at_once.state, RampState::Completed);
    assert_eq!(config.configuration.fallthrough, Serve::variation(0));
    let listed = s
        .list_ramps("p", "dev", Some("g"), &PageRequest::default())
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 2);
}

fn guard(metrics: &[&str], alpha: f64) -> Option<RampGuard> {
    Some(RampGuard {
        metrics: metrics
            .iter()
            .map(|key| ExperimentMetric {
                metric_key: (*key).into(),
                direction: MetricDirection::Increase,
            })
            .collect(),
        alpha,
    })
}

pub async fn guarded_ramps_roll_back_once(s: Storage) {
    setup(&s).await;
    s.create_flag(ACTOR, "p", &bool_flag("f")).await.unwrap();
    let mut on = flag_configuration(&s, "dev", "f").await;
    on.on = true;
    s.update_flag_config(ACTOR, "p", "dev", "f", 1, &on)
        .await
        .unwrap();
    for (bad, field) in [
        (guard(&[], 0.05), "guard.metrics:"),
        (guard(&["retention", "retention"], 0.05), "guard.metrics[1]"),
        (guard(&["retention"], 0.9), "guard.alpha"),
        (guard(&["retention"], 0.0), "guard.alpha"),
    ] {
        let new = NewRamp {
            guard: bad,
            ..ramp_of("f", &[10.0, 50.0, 100.0])
        };
        assert_invalid(s.start_ramp(ACTOR, "p", &new, 2, T0).await, field);
    }
    let new = NewRamp {
        guard: guard(&["retention", "latency"], 0.05),
        ..ramp_of("f", &[10.0, 50.0, 100.0])
    };
    let (ramp, config) = s.start_ramp(ACTOR, "p", &new, 2, T0).await.unwrap();
    let key = format!("vexil-ramp-{}", ramp.id);
    assert_eq!(ramp.experiment_key().as_deref(), Some(key.as_str()));
    assert_eq!(ramp.guard_checked_at, Some(T0));
    assert_eq!(ramp.guard, new.guard);
    let served = &config.configuration.fallthrough;
    assert_eq!(*served, serve_at(0, 1, 10.0, Some(&key)));
    assert_eq!(served.experiment.as_ref().unwrap().key, key);

    // The experiment tag moves no context: the same contexts get the variation as without.
    let users: Vec<Context> = (0..2000)
        .map(|i| Context::from(SingleContext::new("user", &format!("user-{i}")).unwrap()))
        .collect();
    let guarded = users_in(&s, config.version, &users).await;
    let mut untagged = config.configuration.clone();
    untagged.fallthrough = serve_at(0, 1, 10.0, None);
    let plain = s
        .update_flag_config(ACTOR, "p", "dev", "f", config.version, &untagged)
        .await
        .unwrap();
    assert_eq!(users_in(&s, plain.version, &users).await, guarded);
    let some = guarded.iter().filter(|&&x| x).count();
    assert!(some > 120 && some < 280, "about 10 % of 2,000: {some}");

    // Looked at once per interval, by whoever claims the look first.
    assert!(
        s.ramps_to_guard(T0 + HOUR / 2, HOUR)
            .await
            .unwrap()
            .is_empty()
    );
    let to_guard = s.ramps_to_guard(T0 + HOUR, HOUR).await.unwrap();
    assert_eq!(to_guard.len(), 1);
    assert!(s.claim_guard_check(&to_guard[0], T0 + HOUR).await.unwrap());
    assert!(!s.claim_guard_check(&to_guard[0], T0 + HOUR).await.unwrap());
    assert!(s.ramps_to_guard(T0 + HOUR, HOUR).await.unwrap().is_empty());

    // Rolled back once: the baseline for everyone, the reason kept, nothing due any more.
    let fresh = s.get_ramp("p", ramp.id).await.unwrap();
    assert_eq!(fresh.guard_checked_at, Some(T0 + HOUR));
    let at = T0 + HOUR + 5;
    let (back, config) = s
        .roll_back_ramp(
            "vexil:ramp",
            &fresh,
            "the guardrail `retention` regressed",
            at,
        )
        .await
        .unwrap();
    assert_eq!(back.state, RampState::RolledBack);
    assert_eq!(back.rollback_reason, "the guardrail `retention` regressed");
    assert_eq!(back.step, 0);
    assert_eq!(config.configuration.fallthrough, Serve::variation(1));
    assert!(matches!(
        s.roll_back_ramp("vexil:ramp", &fresh, "again", at).await,
        Err(StorageError::FailedPrecondition(_))
    ));
    assert!(matches!(
        s.advance_ramp(&fresh, at).await,
        Err(StorageError::FailedPrecondition(_))
    ));
    assert!(s.due_ramps(T0 + 100 * HOUR).await.unwrap().is_empty());
    assert!(
        s.ramps_to_guard(T0 + 100 * HOUR, HOUR)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        s.move_ramp(ACTOR, "p", ramp.id, RampMove::Cancel, at).await,
        Err(StorageError::FailedPrecondition(_))
    ));
    let history = s
        .list_flag_versions("p", "dev", "f", &PageRequest::default())
        .await
        .unwrap();
    assert_eq!(history.items[0].action, "ramp.rollback");
    assert_eq!(history.items[0].actor, "vexil:ramp");
    // A rolled-back ramp is over: another may start.
    s.start_ramp(ACTOR, "p", &ramp_of("f", &[100.0]), config.version, at)
        .await
        .unwrap();
}
