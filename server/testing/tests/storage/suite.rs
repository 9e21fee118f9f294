//! The storage test suite: each function runs on a fresh, migrated storage of either engine.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use vexil_server::storage::secrets::{generate_sdk_key, hash_secret};
use vexil_server::storage::*;

mod history;
mod ramps;
mod scheduled;
pub use history::*;
pub use ramps::*;
pub use scheduled::*;

const ACTOR: &str = "alice";

/// A part of the flag model written as its JSON.
fn model<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("a valid model")
}

// ---------------------------------------------------------------------------------------
// Helpers

fn project(key: &str) -> NewProject {
    NewProject {
        key: key.into(),
        name: String::new(),
        description: format!("the {key} project"),
    }
}

fn env(key: &str) -> NewEnvironment {
    NewEnvironment {
        key: key.into(),
        name: key.to_uppercase(),
        ..NewEnvironment::default()
    }
}

/// An update of an environment's name only.
fn rename(name: &str) -> EnvironmentUpdate<'_> {
    EnvironmentUpdate {
        name,
        description: "",
        allowed_origins: None,
        event_retention_days: None,
    }
}

fn bool_flag(key: &str) -> NewFlag {
    NewFlag {
        key: key.into(),
        kind: ValueKind::Bool,
        variations: vec![json!(true), json!(false)],
        name: String::new(),
        description: String::new(),
        tags: vec![],
        client_side: false,
        off_variation: Some(1),
        fallthrough: Serve::variation(0),
    }
}

fn segment(key: &str, included: &[&str]) -> SegmentInput {
    SegmentInput {
        key: key.into(),
        name: String::new(),
        description: String::new(),
        included: vec![model(json!({ "values": included }))],
        excluded: vec![],
        rules: vec![],
    }
}

/// A project `p` with environments `dev` and `prod`.
async fn setup(s: &Storage) {
    s.create_project(ACTOR, &project("p")).await.unwrap();
    s.create_environment(ACTOR, "p", &env("dev")).await.unwrap();
    s.create_environment(ACTOR, "p", &env("prod"))
        .await
        .unwrap();
}

async fn env_version(s: &Storage, env: &str) -> i64 {
    s.get_environment("p", env).await.unwrap().version
}

async fn audit_count(s: &Storage) -> usize {
    s.list_audit(&AuditFilter::default(), &PageRequest::first(1000))
        .await
        .unwrap()
        .items
        .len()
}

/// The audit entries about resources of `kind`, newest first, on one page of the default
/// size.
async fn audit_of_kind(s: &Storage, kind: &str) -> Vec<AuditEntry> {
    let filter = AuditFilter {
        resource_kind: Some(kind.into()),
        ..AuditFilter::default()
    };
    s.list_audit(&filter, &PageRequest::default())
        .await
        .unwrap()
        .items
}

/// The configuration of flag `key` in environment `env` of project `p`.
async fn flag_configuration(s: &Storage, env: &str, key: &str) -> FlagConfiguration {
    s.get_flag_config("p", env, key)
        .await
        .unwrap()
        .configuration
}

/// The page of `limit` items after `cursor`, where the previous page ended.
fn next_page(limit: u32, cursor: Option<String>) -> PageRequest {
    PageRequest { limit, cursor }
}

async fn all_changes(s: &Storage, env: &str) -> Vec<Change> {
    match s.changes_since("p", env, 1).await.unwrap() {
        ChangesSince::Changes { changes, .. } => changes,
        other => panic!("expected changes, got {other:?}"),
    }
}

fn assert_conflict<T: std::fmt::Debug>(result: Result<T>) {
    match result {
        Err(StorageError::Conflict { .. }) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
}

fn assert_not_found<T: std::fmt::Debug>(result: Result<T>, kind: ResourceKind) {
    match result {
        Err(StorageError::NotFound { kind: k, .. }) if k == kind => {}
        other => panic!("expected {kind} not found, got {other:?}"),
    }
}

fn assert_exists<T: std::fmt::Debug>(result: Result<T>, kind: ResourceKind) {
    match result {
        Err(StorageError::AlreadyExists { kind: k, .. }) if k == kind => {}
        other => panic!("expected {kind} already exists, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Projects and environments

pub async fn projects_crud_and_pagination(s: Storage) {
    assert!(s.is_empty().await.unwrap());
    let created = s.create_project(ACTOR, &project("alpha")).await.unwrap();
    assert_eq!(created.key, "alpha");
    assert_eq!(created.name, "alpha", "an empty name defaults to the key");
    assert_eq!(created.version, 1);
    assert!(!s.is_empty().await.unwrap());
    assert_eq!(s.get_project("alpha").await.unwrap(), created);

    for key in ["beta", "gamma", "delta"] {
        s.create_project(ACTOR, &project(key)).await.unwrap();
    }
    let first = s.list_projects(&PageRequest::first(3)).await.unwrap();
    let keys: Vec<_> = first.items.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["alpha", "beta", "delta"]);
    let second = s
        .list_projects(&next_page(3, first.next_cursor.clone()))
        .await
        .unwrap();
    assert_eq!(second.items.len(), 1);
    assert_eq!(second.items[0].key, "gamma");
    assert_eq!(second.next_cursor, None);

    let updated = s
        .update_project(ACTOR, "alpha", 1, "Alpha", "first")
        .await
        .unwrap();
    assert_eq!((updated.name.as_str(), updated.version), ("Alpha", 2));
    assert_conflict(s.update_project(ACTOR, "alpha", 1, "Stale", "").await);
    assert_eq!(s.get_project("alpha").await.unwrap().name, "Alpha");

    assert_conflict(s.delete_project(ACTOR, "alpha", 1).await);
    s.delete_project(ACTOR, "alpha", 2).await.unwrap();
    assert_not_found(s.get_project("alpha").await, ResourceKind::Project);
    assert_not_found(
        s.update_project(ACTOR, "nope", 1, "", "").await,
        ResourceKind::Project,
    );
}

pub async fn environments_crud(s: Storage) {
    setup(&s).await;
    s.create_flag(ACTOR, "p", &bool_flag("f")).await.unwrap();
    let staging = s
        .create_environment(ACTOR, "p", &env("staging"))
        .await
        .unwrap();
    assert_eq!(staging.version, 1);
    assert_eq!(staging.name, "STAGING");
    // A new environment gets a configuration for every existing flag, off.
    let config = s.get_flag_config("p", "staging", "f").await.unwrap();
    assert!(!config.configuration.on);
    assert_eq!(config.configuration.off_variation, Some(1));
    assert_eq!(config.configuration.fallthrough, Serve::variation(0));

    let keys: Vec<_> = s
        .list_environments("p")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(keys, ["dev", "prod", "staging"]);

    let origins = vec!["https://app.example.com".to_owned()];
    let renamed = s
        .update_environment(
            ACTOR,
            "p",
            "staging",
            1,
            EnvironmentUpdate {
                name: "Staging",
                description: "pre-production",
                allowed_origins: Some(&origins),
                event_retention_days: Some(30),
            },
        )
        .await
        .unwrap();
    assert_eq!(renamed.name, "Staging");
    assert_eq!(renamed.version, 2);
    assert_eq!(renamed.allowed_origins, origins);
    assert_eq!(renamed.event_retention_days, 30);
    // An update without origins or retention keeps them.
    let renamed = s
        .update_environment(ACTOR, "p", "staging", 2, rename("Staging 2"))
        .await
        .unwrap();
    assert_eq!(renamed.allowed_origins, origins);
    assert_eq!(renamed.event_retention_days, 30);
    assert_eq!(
        s.get_environment("p", "staging").await.unwrap(),
        renamed,
        "read back"
    );
    let mut every = s.every_allowed_origins().await.unwrap();
    every.sort();
    assert_eq!(every, [vec![], vec![], origins.clone()]);
    assert_conflict(
        s.update_environment(ACTOR, "p", "staging", 1, rename("x"))
            .await,
    );
    assert_conflict(s.delete_environment(ACTOR, "p", "staging", 1).await);
    s.delete_environment(ACTOR, "p", "staging", 3)
        .await
        .unwrap();
    assert_not_found(
        s.get_environment("p", "staging").await,
        ResourceKind::Environment,
    );
    assert_not_found(
        s.get_flag_config("p", "staging", "f").await,
        ResourceKind::Environment,
    );
    assert_not_found(s.list_environments("nope").await, ResourceKind::Project);
    assert_not_found(
        s.create_environment(ACTOR, "nope", &env("dev")).await,
        ResourceKind::Project,
    );
}

pub async fn duplicate_keys_are_already_exists(s: Storage) {
    setup(&s).await;
    s.create_flag(ACTOR, "p", &bool_flag("f")).await.unwrap();
    s.create_segment(ACTOR, "p", "dev", &segment("seg", &["a"]))
        .await
        .unwrap();
    let key = generate_sdk_key(SdkKeyKind::Server).unwrap();
    let new_key = NewSdkKey {
        kind: SdkKeyKind::Server,
        name: "k".into(),
        prefix: key.prefix.clone(),
        hash: key.hash.clone(),
    };
    s.issue_sdk_key(ACTOR, "p", "dev", &new_key).await.unwrap();
    let token = NewAdminToken {
        id: "t1".into(),
        principal: "bob".into(),
        description: String::new(),
        hash: hash_secret("token-1"),
        roles: vec![],
        expires_at: None,
    };
    s.create_admin_token(ACTOR, &token).await.unwrap();

    let audits = audit_count(&s).await;
    let (dev, prod) = (env_version(&s, "dev").await, env_version(&s, "prod").await);

    assert_exists(
        s.create_project(ACTOR, &project("p")).await,
        ResourceKind::Project,
    );
    assert_exists(
        s.create_environment(ACTOR, "p", &env("dev")).await,
        ResourceKind::Environment,
    );
    assert_exists(
        s.create_flag(ACTOR, "p", &bool_flag("f")).await,
        ResourceKind::Flag,
    );
    assert_exists(
        s.create_segment(ACTOR, "p", "dev", &segment("seg", &["b"]))
            .await,
        ResourceKind::Segment,
    );
    assert_exists(
        s.issue_sdk_key(ACTOR, "p", "prod", &new_key).await,
        ResourceKind::SdkKey,
    );
    assert_exists(
        s.create_admin_token(ACTOR, &token).await,
        ResourceKind::AdminToken,
    );

    // Nothing of the refused writes is left: no audit entry, no version bump.
    assert_eq!(audit_count(&s).await, audits);
    assert_eq!(env_version(&s, "dev").await, dev);
    assert_eq!(env_version(&s, "prod").await, prod);
    let seg = s.get_segment("p", "dev", "seg").await.unwrap();
    assert_eq!(seg.included, vec![model(json!({ "values": ["a"] }))]);
    // The same key is free in another environment.
    s.create_segment(ACTOR, "p", "prod", &segment("seg", &["b"]))
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------------------
// Flags

pub async fn flag_lifecycle(s: Storage) {
    setup(&s).await;
    let mut new = bool_flag("checkout");
    new.name = "New checkout".into();
    new.tags = vec!["web".into(), "beta".into(), "web".into()];
    let flag = s.create_flag(ACTOR, "p", &new).await.unwrap();
    assert_eq!(flag.version, 1);
    assert_eq!(flag.kind, ValueKind::Bool);
    assert_eq!(
        flag.tags,
        ["beta", "web"],
        "tags are sorted and deduplicated"
    );
    assert!(!flag.archived);
    assert_eq!(s.get_flag("p", "checkout").await.unwrap(), flag);

    // One configuration per environment, at version 1, off.
    let configs = s.list_flag_configs("p", "checkout", &[]).await.unwrap();
    assert_eq!(configs.len(), 2);
    assert!(
        configs
            .iter()
            .all(|c| c.version == 1 && !c.configuration.on)
    );
    assert_eq!(configs[0].environment_key, "dev");
    let only_prod = s
        .list_flag_configs("p", "checkout", &["prod".to_string()])
        .await
        .unwrap();
    assert_eq!(only_prod.len(), 1);

    let update = FlagUpdate {
        name: "Checkout v2".into(),
        description: "rewritten".into(),
        variations: vec![json!(true), json!(false)],
        tags: vec!["web".into()],
        client_side: true,
    };
    let updated = s
        .update_flag(ACTOR, "p", "checkout", 1, &update)
        .await
        .unwrap();
    assert_eq!(updated.version, 2);
    assert_eq!(updated.name, "Checkout v2");
    assert!(updated.client_side);
    assert_eq!(updated.created_at, flag.created_at);
    // A project-level change bumps the flag's version in every environment.
    let configs = s.list_flag_configs("p", "checkout", &[]).await.unwrap();
    assert!(configs.iter().all(|c| c.version == 2));

    let archived = s
        .set_flag_archived(ACTOR, "p", "checkout", 2, true)
        .await
        .unwrap();
    assert!(archived.archived);
    assert_eq!(archived.version, 3);
    let unchanged = s
        .set_flag_archived(ACTOR, "p", "checkout", 3, true)
        .await
        .unwrap();
    assert_eq!(
        unchanged.version, 3,
        "archiving an archived flag changes nothing"
    );
    let restored = s
        .set_flag_archived(ACTOR, "p", "checkout", 3, false)
        .await
        .unwrap();
    assert!(!restored.archived);
    assert_eq!(restored.version, 4);

    assert_conflict(s.delete_flag(ACTOR, "p", "checkout", 3).await);
    s.delete_flag(ACTOR, "p", "checkout", 4).await.unwrap();
    assert_not_found(s.get_flag("p", "checkout").await, ResourceKind::Flag);
    assert_not_found(
        s.get_flag_config("p", "dev", "checkout").await,
        ResourceKind::Flag,
    );
    assert_not_found(s.get_flag("nope", "checkout").await, ResourceKind::Project);
    assert_not_found(
        s.create_flag(ACTOR, "nope", &bool_flag("x")).await,
        ResourceKind::Project,
    );
}

pub async fn flag_configuration_and_toggle(s: Storage) {
    setup(&s).await;
    s.create_flag(ACTOR, "p", &bool_flag("f")).await.unwrap();
    let rules: Vec<Rule> = vec![model(json!({
        "id": "beta",
        "clauses": [{ "attribute": "email", "op": "ends_with", "values": ["@example.com"] }],
        "serve": { "rollout": { "variations": [
            { "variation": 0, "weight": 50000 }, { "variation": 1, "weight": 50000 }
        ] }, "experiment": { "key": "exp" } }
    }))];
    let update = FlagConfiguration {
        on: true,
        off_variation: None,
        targets: vec![model(json!({ "values": ["bob"], "variation": 1 }))],
        rules: rules.clone(),
        fallthrough: Serve::variation(1),
        prerequisites: vec![],
        salt: Some("pepper".into()),
    };
    let config = s
        .update_flag_config(ACTOR, "p", "dev", "f", 1, &update)
        .await
        .unwrap();
    assert!(config.configuration.on);
    assert_eq!(config.version, 2);
    assert_eq!(config.configuration.off_variation, None);
    assert_eq!(config.configuration.rules, rules);
    assert_eq!(config.configuration.salt.as_deref(), Some("pepper"));
    assert_eq!(s.get_flag_config("p", "dev", "f").await.unwrap(), config);
    // The other environment is untouched.
    let prod = s.get_flag_config("p", "prod", "f").await.unwrap();
    assert!(!prod.configuration.on);
    assert_eq!(prod.version, 1);

    let off = s
        .toggle_flag(ACTOR, "p", "dev", "f", 2, false)
        .await
        .unwrap();
    assert!(!off.configuration.on);
    assert_eq!(off.version, 3);
    assert_eq!(
        off.configuration.rules, rules,
        "toggling keeps the rest of the configuration"
    );
    assert_conflict(s.toggle_flag(ACTOR, "p", "dev", "f", 2, true).await);
    assert_not_found(
        s.toggle_flag(ACTOR, "p", "dev", "missing", 1, true).await,
        ResourceKind::Flag,
    );
    assert_not_found(
        s.toggle_flag(ACTOR, "p", "qa", "f", 1, true).await,
        ResourceKind::Environment,
    );

    let configs = s
        .env_flag_configs("p", "dev", &["f".to_string(), "missing".to_string()])
        .await
        .unwrap();
    assert_eq!(configs.len(), 1);
    assert_eq!(configs[0].flag_key, "f");
}

pub async fn environment_versions_bump_with_changes(s: Storage) {
    setup(&s).await;
    let (dev0, prod0) = (env_version(&s, "dev").await, env_version(&s, "prod").await);
    // A project-level change bumps every environment by one.
    s.create_flag(ACTOR, "p", &bool_flag("f")).await.unwrap();
    assert_eq!(env_version(&s, "dev").await, dev0 + 1);
    assert_eq!(env_version(&s, "prod").await, prod0 + 1);
    // An environment-level change bumps that environment only.
    s.toggle_flag(ACTOR, "p", "dev", "f", 1, true)
        .await
        .unwrap();
    assert_eq!(env_version(&s, "dev").await, dev0 + 2);
    assert_eq!(env_version(&s, "prod").await, prod0 + 1);
    s.create_segment(ACTOR, "p", "prod", &segment("s", &["a"]))
        .await
        .unwrap();
    assert_eq!(env_version(&s, "dev").await, dev0 + 2);
    assert_eq!(env_version(&s, "prod").await, prod0 + 2);
    // Reads change nothing.
    s.load_ruleset("p", "dev").await.unwrap();
    s.list_flags("p", &FlagFilter::default(), &PageRequest::default())
        .await
        .unwrap();
    assert_eq!(env_version(&s, "dev").await, dev0 + 2);
    // Changes to an archived flag's project-level fields do not touch the rulesets.
    s.set_flag_archived(ACTOR, "p", "f", 1, true).await.unwrap();
    let dev_archived = env_version(&s, "dev").await;
    assert_eq!(dev_archived, dev0 + 3);
    let update = FlagUpdate {
        name: "renamed".into(),
        description: String::new(),
        variations: vec![json!(true), json!(false)],
        tags: vec![],
        client_side: false,
    };
    s.update_flag(ACTOR, "p", "f", 2, &update).await.unwrap();
    assert_eq!(env_version(&s, "dev").await, dev_archived);
    // Versions never go down, and the ruleset reports the environment's.
    let ruleset = s.load_ruleset("p", "prod").await.unwrap();
    assert_eq!(ruleset.version as i64, env_version(&s, "prod").await);
}

pub async fn stale_versions_conflict_and_write_nothing(s: Storage) {
    setup(&s).await;
    s.create_flag(ACTOR, "p", &bool_flag("f")).await.unwrap();
    s.toggle_flag(ACTOR, "p", "dev", "f", 1, true)
        .await
        .unwrap();
    s.create_segment(ACTOR, "p", "dev", &segment("s", &["a"]))
        .await
        .unwrap();
    let before_ruleset = s.load_ruleset("p", "dev").await.unwrap();
    let before_flag = s.get_flag("p", "f").await.unwrap();
    let audits = audit_count(&s).await;
    let changes = all_changes(&s, "dev").await;
    let prod = env_version(&s, "prod").await;

    let update = FlagUpdate {
        name: "stale".into(),
        description: String::new(),
        variations: vec![json!(false), json!(true)],
        tags: vec!["x".into()],
        client_side: true,
    };
    assert_conflict(s.update_flag(ACTOR, "p", "f", 0, &update).await);
    assert_conflict(s.update_flag(ACTOR, "p", "f", 2, &update).await);
    assert_conflict(s.set_flag_archived(ACTOR, "p", "f", 5, true).await);
    assert_conflict(s.delete_flag(ACTOR, "p", "f", 7).await);
    assert_conflict(s.toggle_flag(ACTOR, "p", "dev", "f", 1, false).await);
    let config = flag_configuration(&s, "dev", "f").await;
    assert_conflict(
        s.update_flag_config(ACTOR, "p", "dev", "f", 1, &config)
            .await,
    );
    assert_conflict(
        s.update_segment(ACTOR, "p", "dev", 9, &segment("s", &["z"]))
            .await,
    );
    assert_conflict(s.delete_segment(ACTOR, "p", "dev", "s", 2).await);
    assert_conflict(
        s.update_environment(ACTOR, "p", "dev", 1, rename("x"))
            .await,
    );
    let ruleset: RulesetData = model(json!({ "flags": [], "segments": [{ "key": "t" }] }));
    assert_conflict(
        s.import_environment(ACTOR, "p", "dev", &ruleset, Some(1))
            .await,
    );

    match s.update_flag(ACTOR, "p", "f", 3, &update).await {
        Err(StorageError::Conflict {
            kind,
            key,
            expected,
            actual,
        }) => {
            assert_eq!(
                (kind, key.as_str(), expected, actual),
                (ResourceKind::Flag, "f", 3, 1)
            );
        }
        other => panic!("expected a conflict, got {other:?}"),
    }

    // Nothing was written: same data, same versions, no audit entry, no change-log entry.
    assert_eq!(s.load_ruleset("p", "dev").await.unwrap(), before_ruleset);
    assert_eq!(s.get_flag("p", "f").await.unwrap(), before_flag);
    assert_eq!(audit_count(&s).await, audits);
    assert_eq!(all_changes(&s, "dev").await, changes);
    assert_eq!(env_version(&s, "prod").await, prod);
}

pub async fn failed_writes_leave_no_audit_entry(s: Storage) {
    setup(&s).await;
    s.create_flag(ACTOR, "p", &bool_flag("f")).await.unwrap();
    let audits = audit_count(&s).await;
    let dev = env_version(&s, "dev").await;
    // Each of these fails after the transaction has started writing (the environment's
    // version is bumped first): the whole transaction must roll back.
    assert_not_found(
        s.toggle_flag(ACTOR, "p", "dev", "missing", 1, true).await,
        ResourceKind::Flag,
    );
    assert_not_found(
        s.update_segment(ACTOR, "p", "dev", 1, &segment("missing", &[]))
            .await,
        ResourceKind::Segment,
    );
    assert_not_found(
        s.delete_segment(ACTOR, "p", "dev", "missing", 1).await,
        ResourceKind::Segment,
    );
    assert_exists(
        s.create_flag(ACTOR, "p", &bool_flag("f")).await,
        ResourceKind::Flag,
    );
    assert_eq!(audit_count(&s).await, audits);
    assert_eq!(env_version(&s, "dev").await, dev);
}

pub async fn audit_log_records_and_filters(s: Storage) {
    let start = now_millis();
    setup(&s).await;
    s.create_flag("bob", "p", &bool_flag("f")).await.unwrap();
    s.toggle_flag("carol", "p", "dev", "f", 1, true)
        .await
        .unwrap();

    let all = s
        .list_audit(&AuditFilter::default(), &PageRequest::first(100))
        .await
        .unwrap();
    let actions: Vec<_> = all.items.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "flag_config.toggle",
            "flag.create",
            "environment.create",
            "environment.create",
            "project.create"
        ],
        "newest first"
    );
    assert!(all.items.windows(2).all(|w| w[0].id > w[1].id));

    let toggle = &all.items[0];
    assert_eq!(toggle.actor, "carol");
    assert_eq!(toggle.resource_kind, "flag_config");
    assert_eq!(toggle.resource_key, "f");
    assert_eq!(toggle.project_key.as_deref(), Some("p"));
    assert_eq!(toggle.environment_key.as_deref(), Some("dev"));
    assert_eq!(toggle.before.as_ref().unwrap()["on"], json!(false));
    assert_eq!(toggle.after.as_ref().unwrap()["on"], json!(true));
    assert!(toggle.at >= start && toggle.at <= now_millis());

    let create = &all.items[1];
    assert_eq!(create.before, None);
    assert_eq!(create.after.as_ref().unwrap()["key"], json!("f"));

    let by_actor = s
        .list_audit(
            &AuditFilter {
                actor: Some("bob".into()),
                ..AuditFilter::default()
            },
            &PageRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(by_actor.items.len(), 1);
    assert_eq!(by_actor.items[0].action, "flag.create");

    let by_resource = s
        .list_audit(
            &AuditFilter {
                resource_kind: Some("environment".into()),
                resource_key: Some("prod".into()),
                ..AuditFilter::default()
            },
            &PageRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(by_resource.items.len(), 1);

    let by_env = s
        .list_audit(
            &AuditFilter {
                project_key: Some("p".into()),
                environment_key: Some("dev".into()),
                ..AuditFilter::default()
            },
            &PageRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(by_env.items.len(), 2);

    let future = s
        .list_audit(
            &AuditFilter {
                since: Some(now_millis() + 60_000),
                ..AuditFilter::default()
            },
            &PageRequest::default(),
        )
        .await
        .unwrap();
    assert!(future.items.is_empty());
    let in_range = s
        .list_audit(
            &AuditFilter {
                since: Some(start),
                until: Some(now_millis() + 1),
                ..AuditFilter::default()
            },
            &PageRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(in_range.items.len(), 5);
    let before_start = s
        .list_audit(
            &AuditFilter {
                until: Some(start),
                ..AuditFilter::default()
            },
            &PageRequest::default(),
        )
        .await
        .unwrap();
    assert!(before_start.items.is_empty());

    // Pagination walks the whole log exactly once.
    let mut seen = Vec::new();
    let mut page = PageRequest::first(2);
    loop {
        let got = s.list_audit(&AuditFilter::default(), &page).await.unwrap();
        assert!(got.items.len() <= 2);
        seen.extend(got.items.iter().map(|e| e.id));
        match got.next_cursor {
            Some(cursor) => page.cursor = Some(cursor),
            None => break,
        }
    }
    assert_eq!(seen, all.items.iter().map(|e| e.id).collect::<Vec<_>>());
}

// ---------------------------------------------------------------------------------------
// Change log, rulesets, import

pub async fn change_log_since_version(s: Storage) {
    setup(&s).await;
    let v0 = env_version(&s, "dev").await;
    assert_eq!(
        s.changes_since("p", "dev", v0).await.unwrap(),
        ChangesSince::Changes {
            version: v0,
            changes: vec![]
        }
    );
    s.create_flag(ACTOR, "p", &bool_flag("a")).await.unwrap(); // v0 + 1
    s.toggle_flag(ACTOR, "p", "dev", "a", 1, true)
        .await
        .unwrap(); // v0 + 2
    s.create_segment(ACTOR, "p", "dev", &segment("s", &["x"]))
        .await
        .unwrap(); // v0 + 3
    s.delete_segment(ACTOR, "p", "dev", "s", 1).await.unwrap(); // v0 + 4
    s.set_flag_archived(ACTOR, "p", "a", 1, true).await.unwrap(); // v0 + 5
    let change = |version, kind, key: &str, op| Change {
        version,
        kind,
        key: key.into(),
        op,
    };
    let expected = vec![
        change(v0 + 1, ChangeKind::Flag, "a", ChangeOp::Upsert),
        change(v0 + 2, ChangeKind::Flag, "a", ChangeOp::Upsert),
        change(v0 + 3, ChangeKind::Segment, "s", ChangeOp::Upsert),
        change(v0 + 4, ChangeKind::Segment, "s", ChangeOp::Delete),
        change(v0 + 5, ChangeKind::Flag, "a", ChangeOp::Delete),
    ];
    assert_eq!(
        s.changes_since("p", "dev", v0).await.unwrap(),
        ChangesSince::Changes {
            version: v0 + 5,
            changes: expected.clone()
        }
    );
    assert_eq!(
        s.changes_since("p", "dev", v0 + 3).await.unwrap(),
        ChangesSince::Changes {
            version: v0 + 5,
            changes: expected[3..].to_vec()
        }
    );
    // prod saw only the project-level changes.
    let prod: Vec<_> = all_changes(&s, "prod")
        .await
        .into_iter()
        .map(|c| (c.key, c.op))
        .collect();
    assert_eq!(
        prod,
        [
            ("a".to_string(), ChangeOp::Upsert),
            ("a".to_string(), ChangeOp::Delete)
        ]
    );
    // A version from the future, or one older than the log, needs a snapshot.
    assert_eq!(
        s.changes_since("p", "dev", v0 + 99).await.unwrap(),
        ChangesSince::SnapshotRequired { version: v0 + 5 }
    );
    assert_eq!(
        s.changes_since("p", "dev", 0).await.unwrap(),
        ChangesSince::SnapshotRequired { version: v0 + 5 }
    );
    s.prune_changes("p", "dev", v0 + 2).await.unwrap();
    assert_eq!(
        s.changes_since("p", "dev", v0 + 1).await.unwrap(),
        ChangesSince::SnapshotRequired { version: v0 + 5 }
    );
    assert_eq!(
        s.changes_since("p", "dev", v0 + 2).await.unwrap(),
        ChangesSince::Changes {
            version: v0 + 5,
            changes: expected[2..].to_vec()
        }
    );
    assert_not_found(
        s.changes_since("p", "qa", 1).await,
        ResourceKind::Environment,
    );
}

pub async fn patches_collapse_changes(s: Storage) {
    setup(&s).await;
    s.create_flag(ACTOR, "p", &bool_flag("keep")).await.unwrap();
    s.create_flag(ACTOR, "p", &bool_flag("gone")).await.unwrap();
    s.create_segment(ACTOR, "p", "dev", &segment("s1", &["a"]))
        .await
        .unwrap();
    let since = env_version(&s, "dev").await;
    s.toggle_flag(ACTOR, "p", "dev", "keep", 1, true)
        .await
        .unwrap();
    s.toggle_flag(ACTOR, "p", "dev", "keep", 2, false)
        .await
        .unwrap();
    s.delete_flag(ACTOR, "p", "gone", 1).await.unwrap();
    s.update_segment(ACTOR, "p", "dev", 1, &segment("s1", &["b"]))
        .await
        .unwrap();
    s.create_segment(ACTOR, "p", "dev", &segment("s2", &["c"]))
        .await
        .unwrap();
    s.delete_segment(ACTOR, "p", "dev", "s2", 1).await.unwrap();

    let patch = s.load_patch("p", "dev", since).await.unwrap().unwrap();
    assert_eq!(patch.from_version, since);
    assert_eq!(patch.version, env_version(&s, "dev").await);
    assert_eq!(patch.upserted_flags.len(), 1);
    assert_eq!(patch.upserted_flags[0].key, "keep");
    assert!(!patch.upserted_flags[0].on);
    assert_eq!(patch.upserted_flags[0].version, 3);
    assert_eq!(patch.deleted_flags, ["gone"]);
    assert_eq!(patch.upserted_segments.len(), 1);
    assert_eq!(
        patch.upserted_segments[0].included,
        vec![model::<KeyList>(json!({ "values": ["b"] }))]
    );
    assert_eq!(patch.deleted_segments, ["s2"]);

    let current = s
        .load_patch("p", "dev", patch.version)
        .await
        .unwrap()
        .unwrap();
    assert!(current.is_empty());
    assert_eq!(s.load_patch("p", "dev", 0).await.unwrap(), None);

    // Applying the patch to the old snapshot gives the new one.
    let ruleset = s.load_ruleset("p", "dev").await.unwrap();
    assert_eq!(ruleset.flags, patch.upserted_flags);
    assert_eq!(ruleset.segments, patch.upserted_segments);
}

pub async fn ruleset_json_merges_flag_and_config(s: Storage) {
    setup(&s).await;
    let mut flag = bool_flag("b-flag");
    flag.client_side = true;
    s.create_flag(ACTOR, "p", &flag).await.unwrap();
    s.create_flag(
        ACTOR,
        "p",
        &NewFlag {
            key: "a-flag".into(),
            kind: ValueKind::String,
            variations: vec![json!("red"), json!("blue")],
            off_variation: None,
            ..bool_flag("a-flag")
        },
    )
    .await
    .unwrap();
    s.create_flag(ACTOR, "p", &bool_flag("archived"))
        .await
        .unwrap();
    s.set_flag_archived(ACTOR, "p", "archived", 1, true)
        .await
        .unwrap();
    let update = FlagConfiguration {
        on: true,
        off_variation: Some(0),
        targets: vec![model(json!({ "values": ["bob"], "variation": 1 }))],
        rules: vec![model(
            json!({ "id": "r", "clauses": [], "serve": { "variation": 1 } }),
        )],
        fallthrough: Serve::variation(0),
        prerequisites: vec![model(json!({ "key": "b-flag", "variation": 0 }))],
        salt: Some("s".into()),
    };
    s.update_flag_config(ACTOR, "p", "dev", "a-flag", 1, &update)
        .await
        .unwrap();
    s.create_segment(ACTOR, "p", "dev", &segment("seg", &["alice"]))
        .await
        .unwrap();

    let ruleset = s.load_ruleset("p", "dev").await.unwrap();
    assert_eq!(ruleset.version as i64, env_version(&s, "dev").await);
    let parsed: Value =
        serde_json::from_str(&s.export_environment("p", "dev").await.unwrap()).unwrap();
    assert_eq!(parsed, serde_json::to_value(&ruleset).unwrap());
    assert_eq!(
        parsed,
        json!({
            "version": ruleset.version,
            "flags": [
                {
                    "key": "a-flag", "kind": "string", "variations": ["red", "blue"], "on": true,
                    "off_variation": 0,
                    "targets": [{ "values": ["bob"], "variation": 1 }],
                    "rules": [{ "id": "r", "clauses": [], "serve": { "variation": 1 } }],
                    "fallthrough": { "variation": 0 },
                    "prerequisites": [{ "key": "b-flag", "variation": 0 }],
                    "salt": "s", "version": 2
                },
                {
                    "key": "b-flag", "kind": "bool", "variations": [true, false], "on": false,
                    "off_variation": 1, "fallthrough": { "variation": 0 }, "version": 1,
                    "client_side": true
                }
            ],
            "segments": [{ "key": "seg", "included": [{ "values": ["alice"] }], "version": 1 }]
        })
    );
    let prod = s.load_ruleset("p", "prod").await.unwrap();
    assert_eq!(prod.flags.len(), 2);
    assert!(prod.segments.is_empty());
}

pub async fn export_then_import_round_trips(s: Storage) {
    setup(&s).await;
    s.create_flag(ACTOR, "p", &bool_flag("f")).await.unwrap();
    let update = FlagConfiguration {
        on: true,
        off_variation: Some(1),
        targets: vec![],
        rules: vec![model(
            json!({ "id": "r", "clauses": [{ "op": "segment_match", "values": ["seg"] }], "serve": { "variation": 1 } }),
        )],
        fallthrough: Serve::variation(0),
        prerequisites: vec![],
        salt: None,
    };
    s.update_flag_config(ACTOR, "p", "dev", "f", 1, &update)
        .await
        .unwrap();
    s.create_segment(ACTOR, "p", "dev", &segment("seg", &["alice"]))
        .await
        .unwrap();
    let mut exported: Value =
        serde_json::from_str(&s.export_environment("p", "dev").await.unwrap()).unwrap();
    // A flag the project does not have yet is created by the import.
    exported["flags"].as_array_mut().unwrap().push(json!({
        "key": "new-flag", "kind": "number", "variations": [1, 2.5], "on": true,
        "fallthrough": { "variation": 1 }, "client_side": true
    }));

    let prod_before = env_version(&s, "prod").await;
    let audits = audit_count(&s).await;
    let summary = s
        .import_environment(
            ACTOR,
            "p",
            "prod",
            &model(exported.clone()),
            Some(prod_before),
        )
        .await
        .unwrap();
    assert_eq!(summary.version, prod_before + 1, "one import, one version");
    assert_eq!(summary.created_flags, ["new-flag"]);
    assert_eq!(summary.updated_flags, ["f"]);
    assert_eq!(summary.segments, ["seg"]);
    assert_eq!(env_version(&s, "prod").await, prod_before + 1);

    let strip = |mut v: Value| {
        v.as_object_mut().unwrap().remove("version");
        for item in v["flags"].as_array_mut().unwrap() {
            item.as_object_mut().unwrap().remove("version");
        }
        for item in v["segments"].as_array_mut().unwrap() {
            item.as_object_mut().unwrap().remove("version");
        }
        v
    };
    let prod: Value =
        serde_json::from_str(&s.export_environment("p", "prod").await.unwrap()).unwrap();
    assert_eq!(strip(prod), strip(exported.clone()));
    // The created flag exists in dev too, off; dev was bumped and logged for it.
    let dev_config = s.get_flag_config("p", "dev", "new-flag").await.unwrap();
    assert!(!dev_config.configuration.on);
    let created = s.get_flag("p", "new-flag").await.unwrap();
    assert_eq!(created.kind, ValueKind::Number);
    assert!(created.client_side);
    assert!(
        all_changes(&s, "dev")
            .await
            .iter()
            .any(|c| c.key == "new-flag" && c.op == ChangeOp::Upsert)
    );
    // One audit entry per resource, plus the import itself.
    let entries = s
        .list_audit(&AuditFilter::default(), &PageRequest::first(100))
        .await
        .unwrap()
        .items;
    assert_eq!(entries.len(), audits + 5);
    assert_eq!(entries[0].action, "environment.import");

    // Importing the same again changes configurations but creates nothing.
    let again = s
        .import_environment(ACTOR, "p", "prod", &model(exported.clone()), None)
        .await
        .unwrap();
    assert!(again.created_flags.is_empty());
    assert_eq!(again.version, prod_before + 2);
}

pub async fn malformed_import_writes_nothing(s: Storage) {
    setup(&s).await;
    s.create_flag(ACTOR, "p", &bool_flag("f")).await.unwrap();
    let before = s.load_ruleset("p", "dev").await.unwrap();
    let audits = audit_count(&s).await;
    // What the model cannot hold never reaches the storage (the admin API refuses it);
    // the storage itself refuses a key given twice.
    let bad: [RulesetData; 2] = [
        model(json!({ "segments": [{ "key": "s" }, { "key": "s" }] })),
        model(json!({ "flags": [
            { "key": "x", "kind": "bool", "variations": [true], "fallthrough": { "variation": 0 } },
            { "key": "x", "kind": "bool", "variations": [true], "fallthrough": { "variation": 0 } }
        ] })),
    ];
    for ruleset in &bad {
        match s.import_environment(ACTOR, "p", "dev", ruleset, None).await {
            Err(StorageError::InvalidArgument(_)) => {}
            other => panic!("expected invalid argument for {ruleset:?}, got {other:?}"),
        }
    }
    // Refused half-way, after other resources were written: rolled back whole.
    let kind_change: RulesetData = model(json!({
        "segments": [{ "key": "s" }],
        "flags": [
            { "key": "g", "kind": "bool", "variations": [true], "fallthrough": { "variation": 0 } },
            { "key": "f", "kind": "string", "variations": ["x"], "fallthrough": { "variation": 0 } }
        ]
    }));
    match s
        .import_environment(ACTOR, "p", "dev", &kind_change, None)
        .await
    {
        Err(StorageError::InvalidArgument(message)) => assert!(message.contains("`f`")),
        other => panic!("expected invalid argument, got {other:?}"),
    }
    assert_eq!(s.load_ruleset("p", "dev").await.unwrap(), before);
    assert_not_found(s.get_flag("p", "g").await, ResourceKind::Flag);
    assert_eq!(audit_count(&s).await, audits);
}

pub async fn list_flags_filters_and_pages(s: Storage) {
    setup(&s).await;
    for i in 0..25 {
        let mut flag = bool_flag(&format!("flag-{i:02}"));
        if i % 2 == 0 {
            flag.tags = vec!["even".into()];
        }
        if i % 5 == 0 {
            flag.tags.push("five".into());
            flag.name = format!("Special_{i}");
        }
        if i == 7 {
            flag.kind = ValueKind::String;
            flag.variations = vec![json!("a")];
        }
        s.create_flag(ACTOR, "p", &flag).await.unwrap();
    }
    s.set_flag_archived(ACTOR, "p", "flag-03", 1, true)
        .await
        .unwrap();

    let list = |filter: FlagFilter, page: PageRequest| {
        let s = s.clone();
        async move { s.list_flags("p", &filter, &page).await.unwrap() }
    };
    let keys = |page: &Page<Flag>| page.items.iter().map(|f| f.key.clone()).collect::<Vec<_>>();

    // Pages of 10 over the 24 live flags, in key order, each exactly once.
    let mut all = Vec::new();
    let mut page = PageRequest::first(10);
    let mut pages = 0;
    loop {
        let got = list(FlagFilter::default(), page.clone()).await;
        pages += 1;
        all.extend(keys(&got));
        match got.next_cursor {
            Some(cursor) => page.cursor = Some(cursor),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(all.len(), 24);
    assert!(all.windows(2).all(|w| w[0] < w[1]));
    assert!(!all.contains(&"flag-03".to_string()));

    let archived = list(
        FlagFilter {
            archived: ArchivedFilter::Only,
            ..FlagFilter::default()
        },
        PageRequest::default(),
    )
    .await;
    assert_eq!(keys(&archived), ["flag-03"]);
    let everything = list(
        FlagFilter {
            archived: ArchivedFilter::Include,
            ..FlagFilter::default()
        },
        PageRequest::default(),
    )
    .await;
    assert_eq!(everything.items.len(), 25);

    let both_tags = list(
        FlagFilter {
            tags: vec!["even".into(), "five".into()],
            ..FlagFilter::default()
        },
        PageRequest::default(),
    )
    .await;
    assert_eq!(keys(&both_tags), ["flag-00", "flag-10", "flag-20"]);

    let by_name = list(
        FlagFilter {
            query: Some("SPECIAL_2".into()),
            ..FlagFilter::default()
        },
        PageRequest::default(),
    )
    .await;
    assert_eq!(keys(&by_name), ["flag-20"], "by name, ignoring case");
    let literal = list(
        FlagFilter {
            query: Some("g_0".into()),
            ..FlagFilter::default()
        },
        PageRequest::default(),
    )
    .await;
    assert!(literal.items.is_empty(), "`_` is no wildcard");
    let by_key = list(
        FlagFilter {
            query: Some("FLAG-2".into()),
            ..FlagFilter::default()
        },
        PageRequest::default(),
    )
    .await;
    assert_eq!(by_key.items.len(), 5);
    let by_kind = list(
        FlagFilter {
            kind: Some(ValueKind::String),
            ..FlagFilter::default()
        },
        PageRequest::default(),
    )
    .await;
    assert_eq!(keys(&by_kind), ["flag-07"]);
    assert_not_found(
        s.list_flags("nope", &FlagFilter::default(), &PageRequest::default())
            .await,
        ResourceKind::Project,
    );
}

pub async fn segments_crud(s: Storage) {
    setup(&s).await;
    let mut input = segment("beta", &["alice"]);
    input.name = "Beta testers".into();
    input.rules = vec![model(
        json!({ "id": "r1", "clauses": [{ "attribute": "plan", "op": "in", "values": ["pro"] }] }),
    )];
    let created = s.create_segment(ACTOR, "p", "dev", &input).await.unwrap();
    assert_eq!(created.version, 1);
    assert_eq!(created.name, "Beta testers");
    assert_eq!(created.rules, input.rules);
    assert_eq!(s.get_segment("p", "dev", "beta").await.unwrap(), created);
    assert_not_found(
        s.get_segment("p", "prod", "beta").await,
        ResourceKind::Segment,
    );

    let mut changed = input.clone();
    changed.excluded = vec![model(json!({ "values": ["mallory"] }))];
    let updated = s
        .update_segment(ACTOR, "p", "dev", 1, &changed)
        .await
        .unwrap();
    assert_eq!(updated.version, 2);
    assert_eq!(updated.excluded, changed.excluded);
    assert_eq!(updated.created_at, created.created_at);

    for key in ["a", "b", "c"] {
        s.create_segment(ACTOR, "p", "dev", &segment(key, &[]))
            .await
            .unwrap();
    }
    let first = s
        .list_segments("p", "dev", &PageRequest::first(2))
        .await
        .unwrap();
    assert_eq!(first.items.len(), 2);
    let rest = s
        .list_segments("p", "dev", &next_page(2, first.next_cursor.clone()))
        .await
        .unwrap();
    let keys: Vec<_> = first
        .items
        .iter()
        .chain(&rest.items)
        .map(|s| s.key.as_str())
        .collect();
    assert_eq!(keys, ["a", "b", "beta", "c"]);
    assert_eq!(rest.next_cursor, None);

    s.delete_segment(ACTOR, "p", "dev", "beta", 2)
        .await
        .unwrap();
    assert_not_found(
        s.get_segment("p", "dev", "beta").await,
        ResourceKind::Segment,
    );
}

// ---------------------------------------------------------------------------------------
// Keys and tokens

pub async fn sdk_keys_lookup_revoke_rotate(s: Storage) {
    setup(&s).await;
    let secret = generate_sdk_key(SdkKeyKind::Server).unwrap();
    let issued = s
        .issue_sdk_key(
            ACTOR,
            "p",
            "dev",
            &NewSdkKey {
                kind: SdkKeyKind::Server,
                name: "backend".into(),
                prefix: secret.prefix.clone(),
                hash: secret.hash.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(issued.environment_key, "dev");
    assert_eq!(issued.kind, SdkKeyKind::Server);
    assert!(issued.is_active(now_millis()));

    let found = s
        .lookup_sdk_key(&hash_secret(&secret.secret))
        .await
        .unwrap();
    assert_eq!(found.as_ref(), Some(&issued));
    assert_eq!(s.lookup_sdk_key(&hash_secret("wrong")).await.unwrap(), None);
    // The secret itself is stored nowhere, not even in the audit log.
    let audit = s
        .list_audit(&AuditFilter::default(), &PageRequest::first(100))
        .await
        .unwrap();
    let text = serde_json::to_string(&audit.items).unwrap();
    assert!(!text.contains(&secret.secret) && !text.contains(&secret.hash));

    let client = generate_sdk_key(SdkKeyKind::Client).unwrap();
    s.issue_sdk_key(
        ACTOR,
        "p",
        "prod",
        &NewSdkKey {
            kind: SdkKeyKind::Client,
            name: "web".into(),
            prefix: client.prefix.clone(),
            hash: client.hash.clone(),
        },
    )
    .await
    .unwrap();
    assert_eq!(s.list_sdk_keys("p", None, false).await.unwrap().len(), 2);
    assert_eq!(
        s.list_sdk_keys("p", Some("dev"), false)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_not_found(
        s.list_sdk_keys("p", Some("qa"), false).await,
        ResourceKind::Environment,
    );

    // Rotation with a grace period: both work until the old one expires.
    let replacement = generate_sdk_key(SdkKeyKind::Server).unwrap();
    let later = now_millis() + 3_600_000;
    let new_key = s
        .rotate_sdk_key(
            ACTOR,
            "p",
            issued.id,
            &NewSdkKey {
                kind: SdkKeyKind::Server,
                name: String::new(),
                prefix: replacement.prefix.clone(),
                hash: replacement.hash.clone(),
            },
            Some(later),
        )
        .await
        .unwrap();
    assert_ne!(new_key.id, issued.id);
    assert_eq!(new_key.name, "backend");
    assert_eq!(new_key.environment_key, "dev");
    let old = s.lookup_sdk_key(&secret.hash).await.unwrap().unwrap();
    assert_eq!(old.expires_at, Some(later));
    assert!(s.lookup_sdk_key(&replacement.hash).await.unwrap().is_some());

    // Rotation to another kind is refused.
    let wrong = generate_sdk_key(SdkKeyKind::Mobile).unwrap();
    match s
        .rotate_sdk_key(
            ACTOR,
            "p",
            new_key.id,
            &NewSdkKey {
                kind: SdkKeyKind::Mobile,
                name: String::new(),
                prefix: wrong.prefix,
                hash: wrong.hash.clone(),
            },
            None,
        )
        .await
    {
        Err(StorageError::InvalidArgument(_)) => {}
        other => panic!("expected invalid argument, got {other:?}"),
    }
    assert_eq!(s.lookup_sdk_key(&wrong.hash).await.unwrap(), None);

    // Revocation takes effect at once.
    let revoked = s.revoke_sdk_key(ACTOR, "p", issued.id).await.unwrap();
    assert!(revoked.revoked_at.is_some());
    assert_eq!(s.lookup_sdk_key(&secret.hash).await.unwrap(), None);
    let again = s.revoke_sdk_key(ACTOR, "p", issued.id).await.unwrap();
    assert_eq!(again.revoked_at, revoked.revoked_at);
    assert_eq!(
        s.list_sdk_keys("p", Some("dev"), false)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        s.list_sdk_keys("p", Some("dev"), true).await.unwrap().len(),
        2
    );
    assert_not_found(
        s.revoke_sdk_key(ACTOR, "p", 9999).await,
        ResourceKind::SdkKey,
    );
    // A key is only reachable through its own project.
    s.create_project(ACTOR, &project("other")).await.unwrap();
    assert_not_found(
        s.get_sdk_key("other", new_key.id).await,
        ResourceKind::SdkKey,
    );

    // Deleting the environment deletes its keys.
    let dev = env_version(&s, "dev").await;
    s.delete_environment(ACTOR, "p", "dev", dev).await.unwrap();
    assert_eq!(s.lookup_sdk_key(&replacement.hash).await.unwrap(), None);
}

pub async fn admin_tokens_and_roles(s: Storage) {
    setup(&s).await;
    let token = s
        .create_admin_token(
            "bootstrap",
            &NewAdminToken {
                id: "tok-1".into(),
                principal: "ci-bot".into(),
                description: "deploys".into(),
                hash: hash_secret("signed-token-1"),
                roles: vec![
                    RoleBinding {
                        project_key: "p".into(),
                        role: Role::Editor,
                    },
                    RoleBinding {
                        project_key: "*".into(),
                        role: Role::Viewer,
                    },
                ],
                expires_at: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(token.roles.len(), 2);
    assert_eq!(
        token.roles[0].project_key, "*",
        "roles are ordered by project"
    );
    assert_eq!(token.role_on("p"), Some(Role::Editor));
    assert_eq!(token.role_on("elsewhere"), Some(Role::Viewer));
    assert_eq!(
        s.lookup_admin_token(&hash_secret("signed-token-1"))
            .await
            .unwrap()
            .as_ref(),
        Some(&token)
    );
    assert_eq!(s.get_admin_token("tok-1").await.unwrap(), token);

    let expired = s
        .create_admin_token(
            "bootstrap",
            &NewAdminToken {
                id: "tok-2".into(),
                principal: "old".into(),
                description: String::new(),
                hash: hash_secret("signed-token-2"),
                roles: vec![],
                expires_at: Some(now_millis() - 1),
            },
        )
        .await
        .unwrap();
    assert!(!expired.is_active(now_millis()));
    assert_eq!(
        s.lookup_admin_token(&hash_secret("signed-token-2"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(s.list_admin_tokens(false).await.unwrap().len(), 1);
    assert_eq!(s.list_admin_tokens(true).await.unwrap().len(), 2);

    let admin = s
        .set_admin_token_roles(
            ACTOR,
            "tok-1",
            &[RoleBinding {
                project_key: "p".into(),
                role: Role::Admin,
            }],
        )
        .await
        .unwrap();
    assert_eq!(admin.role_on("p"), Some(Role::Admin));
    assert_eq!(admin.role_on("elsewhere"), None);
    let duplicate = [
        RoleBinding {
            project_key: "p".into(),
            role: Role::Admin,
        },
        RoleBinding {
            project_key: "p".into(),
            role: Role::Viewer,
        },
    ];
    match s.set_admin_token_roles(ACTOR, "tok-1", &duplicate).await {
        Err(StorageError::InvalidArgument(_)) => {}
        other => panic!("expected invalid argument, got {other:?}"),
    }
    assert_eq!(s.get_admin_token("tok-1").await.unwrap().roles, admin.roles);

    let revoked = s.revoke_admin_token(ACTOR, "tok-1").await.unwrap();
    assert!(revoked.revoked_at.is_some());
    assert_eq!(
        s.lookup_admin_token(&hash_secret("signed-token-1"))
            .await
            .unwrap(),
        None
    );
    assert_not_found(
        s.revoke_admin_token(ACTOR, "nope").await,
        ResourceKind::AdminToken,
    );

    // Deleting a project removes the roles bound to it.
    s.delete_project(ACTOR, "p", 1).await.unwrap();
    assert!(s.get_admin_token("tok-1").await.unwrap().roles.is_empty());
    let entries = audit_of_kind(&s, "admin_token").await;
    assert_eq!(entries.len(), 4);
    assert_eq!(entries.last().unwrap().actor, "bootstrap");
}

// ---------------------------------------------------------------------------------------
// Notices and concurrency

pub async fn change_notices_follow_commits(s: Storage) {
    setup(&s).await;
    let mut notices = s.subscribe();
    s.create_flag(ACTOR, "p", &bool_flag("f")).await.unwrap();
    let mut got = [notices.recv().await.unwrap(), notices.recv().await.unwrap()];
    got.sort_by(|a, b| a.environment_key.cmp(&b.environment_key));
    assert_eq!(got[0].environment_key, "dev");
    assert_eq!(got[0].version, env_version(&s, "dev").await);
    assert_eq!(got[1].environment_key, "prod");
    assert_eq!(got[1].project_key, "p");

    // A refused write sends nothing; the next one does.
    assert_conflict(s.toggle_flag(ACTOR, "p", "dev", "f", 9, true).await);
    s.toggle_flag(ACTOR, "p", "dev", "f", 1, true)
        .await
        .unwrap();
    let next = notices.recv().await.unwrap();
    assert_eq!(
        next,
        EnvironmentChanged {
            project_key: "p".into(),
            environment_key: "dev".into(),
            version: env_version(&s, "dev").await,
        }
    );
    assert!(notices.try_recv().is_err());
}

pub async fn concurrent_writes_get_distinct_versions(s: Storage) {
    setup(&s).await;
    const N: usize = 12;
    for i in 0..N {
        s.create_flag(ACTOR, "p", &bool_flag(&format!("f{i}")))
            .await
            .unwrap();
    }
    let start = env_version(&s, "dev").await;
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.toggle_flag(ACTOR, "p", "dev", &format!("f{i}"), 1, true)
                    .await
                    .unwrap()
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(env_version(&s, "dev").await, start + N as i64);
    let ChangesSince::Changes { changes, .. } = s.changes_since("p", "dev", start).await.unwrap()
    else {
        panic!("expected changes");
    };
    let versions: Vec<_> = changes.iter().map(|c| c.version).collect();
    let expected: Vec<_> = (1..=N as i64).map(|v| start + v).collect();
    assert_eq!(
        versions, expected,
        "one version per write, no gaps, no duplicates"
    );

    // Concurrent updates from the same stale version: exactly one wins.
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.toggle_flag(ACTOR, "p", "dev", "f0", 2, false).await })
        })
        .collect();
    let mut wins = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => wins += 1,
            Err(StorageError::Conflict { .. }) => {}
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert_eq!(wins, 1);
}

/// Writes through a guarded handle commit only while the guarded environments are still at
/// the versions validated against; otherwise nothing is written.
pub async fn guarded_writes_fail_when_the_environment_moved(s: Storage) {
    setup(&s).await;
    s.create_flag(ACTOR, "p", &bool_flag("f")).await.unwrap();
    s.create_segment(ACTOR, "p", "dev", &segment("s", &["a"]))
        .await
        .unwrap();
    let validated = env_version(&s, "dev").await;
    // Another change of the environment lands after the validation.
    s.create_segment(ACTOR, "p", "dev", &segment("other", &["b"]))
        .await
        .unwrap();
    let before = s.load_ruleset("p", "dev").await.unwrap();
    let audits = audit_count(&s).await;

    let stale = s.guarded(EnvGuards::from([("dev".to_owned(), validated)]));
    match stale.delete_segment(ACTOR, "p", "dev", "s", 1).await {
        Err(StorageError::Conflict {
            kind,
            key,
            expected,
            actual,
        }) => assert_eq!(
            (kind, key.as_str(), expected, actual),
            (ResourceKind::Environment, "p/dev", validated, validated + 1)
        ),
        other => panic!("expected an environment conflict, got {other:?}"),
    }
    // A project-level write guards every environment it bumps.
    let update = FlagUpdate {
        name: "renamed".into(),
        description: String::new(),
        variations: vec![json!(false), json!(true)],
        tags: vec![],
        client_side: false,
    };
    let prod = env_version(&s, "prod").await;
    let stale_prod = s.guarded(EnvGuards::from([("prod".to_owned(), prod - 1)]));
    assert!(matches!(
        stale_prod.update_flag(ACTOR, "p", "f", 1, &update).await,
        Err(StorageError::Conflict {
            kind: ResourceKind::Environment,
            ..
        })
    ));
    assert_eq!(s.load_ruleset("p", "dev").await.unwrap(), before);
    assert_eq!(audit_count(&s).await, audits);
    assert_eq!(env_version(&s, "prod").await, prod);

    // Guards at the current versions let the writes through.
    let current = s.guarded(EnvGuards::from([
        ("dev".to_owned(), env_version(&s, "dev").await),
        ("prod".to_owned(), prod),
    ]));
    current
        .delete_segment(ACTOR, "p", "dev", "s", 1)
        .await
        .unwrap();
    assert!(s.get_segment("p", "dev", "s").await.is_err());
}

// ---------------------------------------------------------------------------------------
// Analytics events

fn event_context(context: Value) -> EventContext {
    EventContext::new(&vexil_engine::Context::from_json(&context).unwrap())
}

fn event_batch(batch_id: &str) -> EventBatch {
    EventBatch {
        batch_id: batch_id.into(),
        sdk_name: "vexil-test".into(),
        sdk_version: "1.0.0".into(),
        exposures: vec![ExposureEvent {
            at: 1_700_000_000_001,
            flag_key: "checkout".into(),
            flag_version: 3,
            experiment_key: "checkout-exp".into(),
            variation: 1,
            in_experiment: true,
            context: event_context(
                json!({"kind": "user", "key": "alice", "attributes": {"plan": "pro"}}),
            ),
        }],
        track_events: vec![
            TrackEvent {
                at: 1_700_000_000_002,
                name: "purchase".into(),
                value: Some(12.5),
                data: Some(json!({"currency": "EUR", "items": [1, 2]})),
                context: event_context(json!({"kind": "multi", "contexts": [
                    {"kind": "user", "key": "alice smith"},
                    {"kind": "org", "key": "acme%"},
                ]})),
            },
            TrackEvent {
                at: 1_700_000_000_003,
                name: "signup".into(),
                value: None,
                data: None,
                context: event_context(json!({"key": "bob"})),
            },
        ],
        summaries: vec![EvaluationSummary {
            start: 1_700_000_000_000,
            end: 1_700_000_060_000,
            flag_key: "checkout".into(),
            counters: vec![
                EvaluationCounter {
                    flag_version: 3,
                    variation: None,
                    error_kind: Some("wrong_type".into()),
                    count: 2,
                },
                EvaluationCounter {
                    flag_version: 3,
                    variation: Some(0),
                    error_kind: None,
                    count: 40,
                },
            ],
        }],
    }
}

pub async fn event_batches_are_stored_once(s: Storage) {
    setup(&s).await;
    let batch = event_batch("batch-1");
    let stored = s.store_event_batch("p", "dev", &batch).await.unwrap();
    assert_eq!(
        stored,
        StoredBatch {
            accepted: 4,
            duplicate: false
        }
    );
    let counts = EventCounts {
        batches: 1,
        exposures: 1,
        track_events: 2,
        summaries: 1,
        counters: 2,
    };
    assert_eq!(s.count_events("p", "dev").await.unwrap(), counts);

    // Everything reads back as written; the multi-kind context's keys are sorted by kind
    // and escaped.
    assert_eq!(
        s.list_exposures("p", "dev", 10).await.unwrap(),
        batch.exposures
    );
    let tracked = s.list_track_events("p", "dev", 10).await.unwrap();
    assert_eq!(tracked, batch.track_events);
    assert_eq!(tracked[0].context.kind, "multi");
    assert_eq!(tracked[0].context.key, "org:acme%25 user:alice%20smith");
    assert_eq!(
        (
            tracked[1].context.kind.as_str(),
            tracked[1].context.key.as_str()
        ),
        ("user", "bob")
    );
    assert_eq!(
        tracked[1].context.json,
        json!({"kind": "user", "key": "bob"})
    );
    // Counters read back ordered by version and variation, the default (none) first.
    let summaries = s.list_evaluation_summaries("p", "dev", 10).await.unwrap();
    assert_eq!(summaries, batch.summaries);
    assert_eq!(s.list_track_events("p", "dev", 1).await.unwrap().len(), 1);

    // A retry is acknowledged as a duplicate and stores nothing, even with other events.
    let mut retry = event_batch("batch-1");
    retry.track_events.clear();
    let again = s.store_event_batch("p", "dev", &retry).await.unwrap();
    assert_eq!(
        again,
        StoredBatch {
            accepted: 4,
            duplicate: true
        }
    );
    assert_eq!(s.count_events("p", "dev").await.unwrap(), counts);

    // Batch ids are per environment; an empty batch is a batch.
    let other = s.store_event_batch("p", "prod", &batch).await.unwrap();
    assert!(!other.duplicate);
    assert_eq!(s.count_events("p", "prod").await.unwrap(), counts);
    let empty = s
        .store_event_batch(
            "p",
            "dev",
            &EventBatch {
                batch_id: "empty".into(),
                ..EventBatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(empty.accepted, 0);
    assert_eq!(s.count_events("p", "dev").await.unwrap().batches, 2);

    assert!(matches!(
        s.store_event_batch("p", "nope", &batch).await,
        Err(StorageError::NotFound {
            kind: ResourceKind::Environment,
            ..
        })
    ));
    assert!(matches!(
        s.count_events("nope", "dev").await,
        Err(StorageError::NotFound {
            kind: ResourceKind::Project,
            ..
        })
    ));
}

pub async fn large_and_concurrent_event_batches(s: Storage) {
    setup(&s).await;
    // More rows than one multi-row INSERT holds, for every table.
    let mut batch = event_batch("big");
    let exposure = batch.exposures[0].clone();
    let tracked = batch.track_events[1].clone();
    let summary = batch.summaries[0].clone();
    batch.exposures = vec![exposure; 1201];
    batch.track_events = vec![tracked; 1202];
    batch.summaries = vec![summary; 601];
    let stored = s.store_event_batch("p", "dev", &batch).await.unwrap();
    assert_eq!(stored.accepted, 1201 + 1202 + 601);
    let counts = s.count_events("p", "dev").await.unwrap();
    assert_eq!(
        (
            counts.exposures,
            counts.track_events,
            counts.summaries,
            counts.counters
        ),
        (1201, 1202, 601, 1202)
    );

    // The same batch delivered twice at once is stored exactly once.
    let small = event_batch("raced");
    let (a, b) = tokio::join!(
        s.store_event_batch("p", "prod", &small),
        s.store_event_batch("p", "prod", &small)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a.duplicate != b.duplicate, "{a:?} {b:?}");
    assert_eq!(s.count_events("p", "prod").await.unwrap().track_events, 2);
}

// ---------------------------------------------------------------------------------------
// Experiment roll-ups

/// A small deterministic generator (xorshift64*), so that every run checks the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const T0: i64 = 1_700_000_000_000 - 1_700_000_000_000 % HOUR_MILLIS;

/// Exposures and track events of 60 users in two experiments over five hours: users
/// exposed to two variations, events before a user's first exposure, events with and
/// without a value, exposures outside the experiment, in batches of a few events each.
fn rollup_workload(seed: u64) -> Vec<EventBatch> {
    let mut rng = Rng(seed);
    let user = |i: u64| event_context(json!({"key": format!("u{i}")}));
    let mut exposures = Vec::new();
    let mut tracks = Vec::new();
    for i in 0..60u64 {
        let experiment = if i % 4 == 0 { "other" } else { "x" };
        let variation = (i % 3) as i64;
        for _ in 0..1 + rng.below(3) {
            // Now and then another variation: the user is excluded from then on.
            let variation = if rng.below(8) == 0 {
                (variation + 1) % 3
            } else {
                variation
            };
            exposures.push(ExposureEvent {
                at: T0 + rng.below(5 * HOUR_MILLIS as u64) as i64,
                flag_key: "checkout".into(),
                flag_version: 1,
                experiment_key: experiment.into(),
                variation,
                in_experiment: rng.below(10) != 0,
                context: user(i),
            });
        }
        for _ in 0..rng.below(6) {
            tracks.push(TrackEvent {
                at: T0 + rng.below(5 * HOUR_MILLIS as u64) as i64,
                name: if rng.below(3) == 0 {
                    "signup"
                } else {
                    "purchase"
                }
                .into(),
                value: (rng.below(4) != 0).then(|| rng.below(40) as f64 / 2.0),
                data: None,
                context: user(i),
            });
        }
    }
    // Users never exposed send events too.
    for i in 60..70u64 {
        tracks.push(TrackEvent {
            at: T0 + rng.below(5 * HOUR_MILLIS as u64) as i64,
            name: "purchase".into(),
            value: Some(1.0),
            data: None,
            context: user(i),
        });
    }
    // Shuffled, then cut into batches: arrival order is unrelated to event time.
    let mut all: Vec<(Option<ExposureEvent>, Option<TrackEvent>)> = exposures
        .into_iter()
        .map(|e| (Some(e), None))
        .chain(tracks.into_iter().map(|t| (None, Some(t))))
        .collect();
    for i in (1..all.len()).rev() {
        all.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut batches = Vec::new();
    for (n, chunk) in all.chunks(7).enumerate() {
        let mut batch = EventBatch {
            batch_id: format!("rollup-{seed}-{n}"),
            sdk_name: "vexil-test".into(),
            sdk_version: "1.0.0".into(),
            ..EventBatch::default()
        };
        for (exposure, track) in chunk {
            batch.exposures.extend(exposure.clone());
            batch.track_events.extend(track.clone());
        }
        batches.push(batch);
    }
    batches
}

/// The aggregates of experiment `x` at `until`, computed from the events by definition.
fn aggregates_by_definition(
    batches: &[EventBatch],
    metrics: &[MetricQuery],
    until: Millis,
) -> ExperimentAggregates {
    let exposures: Vec<&ExposureEvent> = batches
        .iter()
        .flat_map(|b| &b.exposures)
        .filter(|e| e.in_experiment && e.experiment_key == "x" && e.at <= until)
        .collect();
    // User → (first exposure, its variation, exposed to another one).
    let mut units: BTreeMap<String, (Millis, i64, bool)> = BTreeMap::new();
    for e in &exposures {
        let unit = units
            .entry(e.context.key.clone())
            .or_insert((e.at, e.variation, false));
        if e.at < unit.0 {
            *unit = (e.at, e.variation, unit.2);
        }
    }
    for e in &exposures {
        let unit = units.get_mut(&e.context.key).unwrap();
        if e.variation != unit.1 {
            unit.2 = true;
        }
    }
    let mut aggregates = ExperimentAggregates::default();
    for (_, variation, multiple) in units.values() {
        if *multiple {
            aggregates.units.multiple += 1;
        } else {
            *aggregates
                .units
                .per_variation
                .entry(*variation)
                .or_insert(0) += 1;
        }
    }
    for metric in metrics {
        let mut sums: BTreeMap<i64, vexil_stats::Summary> = aggregates
            .units
            .per_variation
            .keys()
            .map(|v| (*v, vexil_stats::Summary::default()))
            .collect();
        let mut pairs: BTreeMap<i64, vexil_stats::PairSummary> = BTreeMap::new();
        let mut with_history: BTreeMap<i64, vexil_stats::PairSummary> = BTreeMap::new();
        let mut unit_means: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
        for (key, (first, variation, multiple)) in &units {
            if *multiple {
                continue;
            }
            let events_of = |name: &str| -> Vec<&TrackEvent> {
                batches
                    .iter()
                    .flat_map(|b| &b.track_events)
                    .filter(|t| {
                        t.context.key == *key && t.name == name && t.at >= *first && t.at <= until
                    })
                    .collect()
            };
            let events = events_of(&metric.event_name);
            let values: Vec<f64> = events.iter().filter_map(|t| t.value).collect();
            // A ratio's parts: values, an event without one counting 1.
            let weight = |events: &[&TrackEvent]| -> f64 {
                events.iter().map(|t| t.value.unwrap_or(1.0)).sum()
            };
            let x = match metric.kind {
                MetricKind::Conversion => Some(if events.is_empty() { 0.0 } else { 1.0 }),
                MetricKind::Count => Some(events.len() as f64),
                MetricKind::Sum => Some(values.iter().sum()),
                MetricKind::Mean => {
                    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
                }
                MetricKind::Quantile => {
                    let mean = (!values.is_empty())
                        .then(|| values.iter().sum::<f64>() / values.len() as f64);
                    if let Some(mean) = mean {
                        unit_means.entry(*variation).or_default().push(mean);
                    }
                    mean
                }
                MetricKind::Ratio => {
                    let numerator = weight(&events);
                    let denominator = weight(&events_of(&metric.denominator_event_name));
                    pairs
                        .entry(*variation)
                        .or_default()
                        .add(numerator, denominator);
                    Some(numerator)
                }
            };
            if let Some(x) = x {
                sums.get_mut(variation).unwrap().add(x);
            }
            if metric.has_covariate() {
                // The same value over the lookback before the first exposure.
                let before: Vec<&TrackEvent> = batches
                    .iter()
                    .flat_map(|b| &b.track_events)
                    .filter(|t| {
                        t.context.key == *key
                            && t.name == metric.event_name
                            && t.at < *first
                            && t.at >= *first - metric.covariate_lookback
                    })
                    .collect();
                let y = match metric.kind {
                    MetricKind::Conversion => f64::from(u8::from(!before.is_empty())),
                    MetricKind::Count => before.len() as f64,
                    _ => before.iter().filter_map(|t| t.value).sum(),
                };
                with_history
                    .entry(*variation)
                    .or_default()
                    .add(x.unwrap_or(0.0), y);
            }
        }
        aggregates.metrics.push(sums);
        aggregates.ratios.push(pairs);
        aggregates.covariates.push(with_history);
        // A quantile metric's order statistics, from the sorted unit means; a variation too
        // small for the interval has the engine's reason instead.
        let (mut quantiles, mut notes) = (BTreeMap::new(), BTreeMap::new());
        for (variation, values) in unit_means {
            match vexil_stats::QuantileSummary::from_values(
                &values,
                metric.quantile,
                metric.quantile_alpha,
            ) {
                Ok(summary) => {
                    quantiles.insert(variation, summary);
                }
                Err(err) => {
                    notes.insert(variation, err);
                }
            }
        }
        aggregates.quantiles.push(quantiles);
        aggregates.quantile_notes.push(notes);
    }
    aggregates
}

fn rollup_metrics() -> Vec<MetricQuery> {
    vec![
        MetricQuery::new("purchase", MetricKind::Conversion),
        MetricQuery::new("purchase", MetricKind::Count),
        MetricQuery::new("purchase", MetricKind::Sum),
        MetricQuery::new("purchase", MetricKind::Mean),
        MetricQuery::new("signup", MetricKind::Conversion),
        MetricQuery::new("never-sent", MetricKind::Sum),
        // Purchase value per signup (a signup without a value counts 1).
        MetricQuery::ratio("purchase", "signup"),
        // Spend and conversions with their history over the 2 hours before the exposure.
        MetricQuery {
            covariate_lookback: 2 * HOUR_MILLIS,
            ..MetricQuery::new("purchase", MetricKind::Sum)
        },
        MetricQuery {
            covariate_lookback: 2 * HOUR_MILLIS,
            ..MetricQuery::new("signup", MetricKind::Conversion)
        },
        // The median purchase value and p90 of the units' mean, with wide intervals (the
        // workload has tens of units per variation).
        MetricQuery::quantile("purchase", 0.5, 0.2),
        MetricQuery::quantile("purchase", 0.9, 0.3),
    ]
}

fn assert_aggregates_match(got: &ExperimentAggregates, want: &ExperimentAggregates, at: Millis) {
    assert_eq!(got.units, want.units, "units at {at}");
    assert_eq!(got.metrics.len(), want.metrics.len());
    for (i, (g, w)) in got.metrics.iter().zip(&want.metrics).enumerate() {
        assert_eq!(
            g.keys().collect::<Vec<_>>(),
            w.keys().collect::<Vec<_>>(),
            "metric {i} at {at}"
        );
        for (variation, w) in w {
            let g = g[variation];
            assert_eq!(g.n, w.n, "metric {i}, variation {variation} at {at}");
            for (a, b) in [
                (g.mean, w.mean),
                (g.squared_deviations, w.squared_deviations),
            ] {
                assert!(
                    (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                    "metric {i}, variation {variation} at {at}: {g:?} against {w:?}"
                );
            }
        }
    }
    // Quantile metrics: the same order statistics, or the same reason for none.
    assert_eq!(got.quantiles.len(), want.quantiles.len());
    for (i, (g, w)) in got.quantiles.iter().zip(&want.quantiles).enumerate() {
        assert_eq!(
            g.keys().collect::<Vec<_>>(),
            w.keys().collect::<Vec<_>>(),
            "quantile {i} at {at}"
        );
        for (variation, w) in w {
            let g = g[variation];
            assert_eq!(
                (g.n, g.level, g.alpha),
                (w.n, w.level, w.alpha),
                "quantile {i}"
            );
            for (a, b) in [
                (g.estimate, w.estimate),
                (g.lower, w.lower),
                (g.upper, w.upper),
            ] {
                assert!(
                    (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                    "quantile {i}, variation {variation} at {at}: {g:?} against {w:?}"
                );
            }
        }
    }
    assert_eq!(
        got.quantile_notes, want.quantile_notes,
        "quantile notes at {at}"
    );
    // Ratio metrics and CUPED's covariates: the pairs of every exposed unit, (0, 0) for those
    // without events.
    assert_eq!(got.ratios.len(), want.ratios.len());
    assert_eq!(got.covariates.len(), want.covariates.len());
    for (i, (g, w)) in got
        .ratios
        .iter()
        .chain(&got.covariates)
        .zip(want.ratios.iter().chain(&want.covariates))
        .enumerate()
    {
        for (variation, w) in w {
            let g = g.get(variation).copied().unwrap_or_default();
            assert_eq!(g.n, w.n, "ratio {i}, variation {variation} at {at}");
            for (a, b) in [
                (g.mean_x, w.mean_x),
                (g.mean_y, w.mean_y),
                (g.squared_deviations_x, w.squared_deviations_x),
                (g.squared_deviations_y, w.squared_deviations_y),
                (g.co_deviations, w.co_deviations),
            ] {
                assert!(
                    (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                    "ratio {i}, variation {variation} at {at}: {g:?} against {w:?}"
                );
            }
        }
    }
}

/// Cut-offs before, inside and after the data: hour boundaries, the millisecond before
/// them, and the exact times of events.
fn rollup_cutoffs(batches: &[EventBatch]) -> Vec<Millis> {
    let mut cutoffs = vec![T0 - 1, T0 + 6 * HOUR_MILLIS];
    for h in 0..=5 {
        cutoffs.push(T0 + h * HOUR_MILLIS);
        cutoffs.push(T0 + h * HOUR_MILLIS - 1);
        cutoffs.push(T0 + h * HOUR_MILLIS + HOUR_MILLIS / 2);
    }
    cutoffs.extend(
        batches
            .iter()
            .flat_map(|b| &b.track_events)
            .take(8)
            .map(|t| t.at),
    );
    cutoffs.extend(
        batches
            .iter()
            .flat_map(|b| &b.exposures)
            .take(4)
            .map(|e| e.at),
    );
    cutoffs
}

async fn assert_matches_at_every_cutoff(
    s: &Storage,
    batches: &[EventBatch],
    metrics: &[MetricQuery],
) {
    for until in rollup_cutoffs(batches) {
        let got = s
            .experiment_aggregates("p", "dev", "x", metrics, until)
            .await
            .unwrap();
        assert_aggregates_match(
            &got,
            &aggregates_by_definition(batches, metrics, until),
            until,
        );
    }
}

pub async fn experiment_rollups_match_their_definition(s: Storage) {
    setup(&s).await;
    let batches = rollup_workload(7);
    let metrics = rollup_metrics();
    // Compaction rounds between some batches, in the middle of the data's arrival.
    for (n, batch) in batches.iter().enumerate() {
        s.store_event_batch("p", "dev", batch).await.unwrap();
        if n % 5 == 2 {
            s.compact_analytics_once().await.unwrap();
        }
        if n == batches.len() / 2 {
            // Results read half-way see exactly the batches stored so far.
            let until = T0 + 3 * HOUR_MILLIS + 17;
            let got = s
                .experiment_aggregates("p", "dev", "x", &metrics, until)
                .await
                .unwrap();
            let want = aggregates_by_definition(&batches[..=n], &metrics, until);
            assert_aggregates_match(&got, &want, until);
        }
    }
    assert_matches_at_every_cutoff(&s, &batches, &metrics).await;
    assert_eq!(s.analytics_backlog().await.unwrap(), (0, 0));
    // The other environment saw nothing.
    let empty = s
        .experiment_aggregates("p", "prod", "x", &metrics, T0 + 6 * HOUR_MILLIS)
        .await
        .unwrap();
    assert_eq!(empty.units, UnitCounts::default());
    assert!(empty.metrics.iter().all(BTreeMap::is_empty));
}

/// Event values near 10⁹ with a spread of a few units: the per-context means of the `Mean`
/// metric differ in the last digits only. Variances rebuilt from raw sums (Σx² of size 10²⁰)
/// would be noise here; moments about the mean keep them.
pub async fn experiment_moments_hold_when_the_mean_dwarfs_the_spread(s: Storage) {
    setup(&s).await;
    let mut batches = rollup_workload(13);
    for batch in &mut batches {
        for track in &mut batch.track_events {
            track.value = track.value.map(|v| 1e9 + v);
        }
    }
    let metrics = vec![MetricQuery::new("purchase", MetricKind::Mean)];
    for batch in &batches {
        s.store_event_batch("p", "dev", batch).await.unwrap();
    }
    for until in [T0 + 3 * HOUR_MILLIS, T0 + 6 * HOUR_MILLIS] {
        let got = s
            .experiment_aggregates("p", "dev", "x", &metrics, until)
            .await
            .unwrap();
        let want = aggregates_by_definition(&batches, &metrics, until);
        assert_eq!(got.metrics[0].keys().count(), 3, "{got:?}");
        for (variation, want) in &want.metrics[0] {
            let got = got.metrics[0][variation];
            assert_eq!(got.n, want.n, "variation {variation} at {until}");
            assert!(want.variance() > 1.0, "{want:?}");
            // Per-context means differ from the definition's by the rounding of sums of
            // values near 10⁹ (an ulp is 1.2e-7), not by the variance's own magnitude.
            assert!(
                (got.mean - want.mean).abs() < 1e-6
                    && (got.variance() / want.variance() - 1.0).abs() < 1e-6,
                "variation {variation} at {until}: {got:?} against {want:?}"
            );
        }
    }
}

/// However many instances raise the same alert, it is recorded (and audited) once; another
/// kind, metric or variation is another alert.
pub async fn experiment_alerts_are_raised_once(s: Storage) {
    setup(&s).await;
    s.create_metric(
        ACTOR,
        "p",
        &NewMetric {
            key: "rate".into(),
            name: String::new(),
            description: String::new(),
            event_name: "purchase".into(),
            kind: MetricKind::Conversion,
            denominator_event_name: String::new(),
            quantile: 0.0,
        },
    )
    .await
    .unwrap();
    let goal = ExperimentMetric {
        metric_key: "rate".into(),
        direction: MetricDirection::Increase,
    };
    let spec = ExperimentSpec {
        name: "x".into(),
        hypothesis: String::new(),
        flag_key: "f".into(),
        rule_id: String::new(),
        traffic_allocation: 100_000,
        layer: String::new(),
        layer_offset: 0,
        variations: vec![
            WeightedVariation {
                variation: 0,
                weight: 50_000,
            },
            WeightedVariation {
                variation: 1,
                weight: 50_000,
            },
        ],
        bucket_by: None,
        primary_metric: goal,
        guardrail_metrics: Vec::new(),
        alpha: 0.05,
        power: 0.8,
        minimum_detectable_effect: 0.1,
        baseline_mean: 0.2,
        baseline_std_dev: None,
        required_sample_size: 1_000,
        one_sided: false,
        stop_on_guardrail_regression: false,
        cuped_lookback_days: 0,
    };
    s.create_experiment(ACTOR, "p", "dev", "x", &spec)
        .await
        .unwrap();
    let alert = |kind: &str, variation: u32| ExperimentAlertRecord {
        kind: kind.into(),
        metric_key: "rate".into(),
        variation,
        message: "the guardrail `rate` regressed".into(),
    };
    let before = audit_count(&s).await;
    let mut racing = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let s = s.clone();
        let regression = alert("guardrail_regressed", 1);
        racing.spawn(async move {
            s.raise_experiment_alert("watch", "p", "dev", "x", &regression)
                .await
                .unwrap()
        });
    }
    let raised: Vec<bool> = racing.join_all().await;
    assert_eq!(raised.iter().filter(|new| **new).count(), 1, "{raised:?}");
    assert!(
        s.raise_experiment_alert("watch", "p", "dev", "x", &alert("guardrail_regressed", 2))
            .await
            .unwrap()
    );
    assert!(
        s.raise_experiment_alert("watch", "p", "dev", "x", &alert("significance_reached", 1))
            .await
            .unwrap()
    );
    assert_eq!(audit_count(&s).await, before + 3);
    // An unknown experiment raises nothing.
    assert!(
        !s.raise_experiment_alert(
            "watch",
            "p",
            "dev",
            "nope",
            &alert("guardrail_regressed", 1)
        )
        .await
        .unwrap()
    );
}

pub async fn experiment_rollups_under_concurrent_writes(s: Storage) {
    setup(&s).await;
    let batches = rollup_workload(11);
    let metrics = rollup_metrics();
    // Four publishers and a compactor running rounds all the while.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let compactor = tokio::spawn({
        let s = s.clone();
        let done = done.clone();
        async move {
            let mut rounds = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                s.compact_analytics_once().await.unwrap();
                rounds += 1;
                tokio::task::yield_now().await;
            }
            rounds
        }
    });
    let mut publishers = tokio::task::JoinSet::new();
    for chunk in batches.chunks(batches.len().div_ceil(4)) {
        let s = s.clone();
        let chunk = chunk.to_vec();
        publishers.spawn(async move {
            for batch in &chunk {
                s.store_event_batch("p", "dev", batch).await.unwrap();
            }
        });
    }
    while let Some(published) = publishers.join_next().await {
        published.unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(compactor.await.unwrap() > 0);
    assert_matches_at_every_cutoff(&s, &batches, &metrics).await;
}

// ---------------------------------------------------------------------------------------
// Personal data: erasure and retention

/// The batches without anything of the single-kind context `user`/`key`.
fn without_user(batches: &[EventBatch], key: &str) -> Vec<EventBatch> {
    let of_user = |c: &EventContext| c.kind == "user" && c.key == key;
    batches
        .iter()
        .map(|b| EventBatch {
            exposures: b
                .exposures
                .iter()
                .filter(|e| !of_user(&e.context))
                .cloned()
                .collect(),
            track_events: b
                .track_events
                .iter()
                .filter(|t| !of_user(&t.context))
                .cloned()
                .collect(),
            ..b.clone()
        })
        .collect()
}

pub async fn erasing_a_context_removes_it_from_events_and_results(s: Storage) {
    setup(&s).await;
    let metrics = rollup_metrics();
    let mut batches = rollup_workload(5);
    // A user of experiment `x` with track events; it is also made part of a multi-kind
    // context, and an organization gets the same key.
    let victim = (1..60)
        .filter(|i| i % 4 != 0)
        .map(|i| format!("u{i}"))
        .find(|key| {
            batches
                .iter()
                .flat_map(|b| &b.track_events)
                .any(|t| t.context.key == *key)
        })
        .unwrap();
    let tracked = |context: Value| TrackEvent {
        at: T0 + HOUR_MILLIS,
        name: "purchase".into(),
        value: Some(3.0),
        data: None,
        context: event_context(context),
    };
    batches.push(EventBatch {
        batch_id: "shared".into(),
        sdk_name: "vexil-test".into(),
        sdk_version: "1.0.0".into(),
        track_events: vec![
            tracked(json!({"kind": "multi", "contexts": [
                {"kind": "user", "key": victim}, {"kind": "org", "key": "acme"}]})),
            tracked(json!({"kind": "org", "key": victim})),
        ],
        ..EventBatch::default()
    });
    for env in ["dev", "prod"] {
        for batch in &batches {
            s.store_event_batch("p", env, batch).await.unwrap();
        }
    }
    s.compact_analytics(std::time::Duration::MAX).await.unwrap();
    let prod_before = s.count_events("p", "prod").await.unwrap();
    let of_victim = |c: &EventContext| c.kind == "user" && c.key == victim;
    let exposures_of_victim = batches
        .iter()
        .flat_map(|b| &b.exposures)
        .filter(|e| of_victim(&e.context))
        .count() as u64;
    let tracks_of_victim = batches
        .iter()
        .flat_map(|b| &b.track_events)
        .filter(|t| of_victim(&t.context))
        .count() as u64;
    assert!(exposures_of_victim > 0 && tracks_of_victim > 0);

    let erased = s
        .erase_context(ACTOR, "p", Some("dev"), "user", &victim)
        .await
        .unwrap();
    assert_eq!(erased.exposures, exposures_of_victim);
    assert_eq!(
        erased.track_events,
        tracks_of_victim + 1,
        "the multi-kind one too"
    );
    assert_eq!(erased.experiment_units, 1);
    assert_eq!(erased.environments, ["dev"]);

    // The results are those of the events without u1, at every cut-off.
    assert_matches_at_every_cutoff(&s, &without_user(&batches, &victim), &metrics).await;
    // The organization with the same key, the other environment: untouched.
    let left = s.list_track_events("p", "dev", 10_000).await.unwrap();
    assert!(
        left.iter()
            .any(|t| t.context.kind == "org" && t.context.key == victim)
    );
    assert!(
        !left
            .iter()
            .any(|t| t.context.key.contains(&format!("user:{victim}")))
    );
    assert_eq!(s.count_events("p", "prod").await.unwrap(), prod_before);

    // Idempotent: nothing left to erase.
    let again = s
        .erase_context(ACTOR, "p", Some("dev"), "user", &victim)
        .await
        .unwrap();
    assert_eq!(
        (
            again.exposures,
            again.track_events,
            again.experiment_units,
            again.rollup_rows
        ),
        (0, 0, 0, 0)
    );
    // Every environment of the project.
    let everywhere = s
        .erase_context(ACTOR, "p", None, "user", &victim)
        .await
        .unwrap();
    assert_eq!(everywhere.environments, ["dev", "prod"]);
    assert_eq!(everywhere.exposures, exposures_of_victim);

    // Audited under a hash of the key, which the log never holds.
    let entries = audit_of_kind(&s, "context").await;
    assert_eq!(entries.len(), 3);
    for entry in &entries {
        assert_eq!(entry.action, "context.erase");
        assert_eq!(entry.resource_key, erased_context_label("user", &victim));
        let text = serde_json::to_string(&entry.after).unwrap();
        assert!(!text.contains(&victim), "{text}");
    }
    assert_eq!(
        entries[2].after.as_ref().unwrap()["track_events"],
        json!(tracks_of_victim + 1)
    );

    assert_not_found(
        s.erase_context(ACTOR, "p", Some("staging"), "user", &victim)
            .await,
        ResourceKind::Environment,
    );
    assert_not_found(
        s.erase_context(ACTOR, "nope", None, "user", &victim).await,
        ResourceKind::Project,
    );
}

pub async fn retention_deletes_old_raw_events_and_keeps_results(s: Storage) {
    setup(&s).await;
    // CUPED's covariates read raw events from before each exposure, which retention deletes
    // like any raw event (STATISTICS.md says so): only the roll-ups' results are kept.
    let metrics: Vec<MetricQuery> = rollup_metrics()
        .into_iter()
        .filter(|m| !m.has_covariate())
        .collect();
    let mut batches = rollup_workload(3);
    for batch in &batches {
        s.store_event_batch("p", "dev", batch).await.unwrap();
        s.store_event_batch("p", "prod", batch).await.unwrap();
    }
    s.compact_analytics(std::time::Duration::MAX).await.unwrap();
    let version = env_version(&s, "dev").await;
    s.update_environment(
        ACTOR,
        "p",
        "dev",
        version,
        EnvironmentUpdate {
            name: "DEV",
            description: "",
            allowed_origins: None,
            event_retention_days: Some(1),
        },
    )
    .await
    .unwrap();
    let before = s.count_events("p", "dev").await.unwrap();

    // A day and two and a half hours after T0: raw events before T0 + 2 h expire.
    let watermark = T0 + 2 * HOUR_MILLIS;
    let now = T0 + 24 * HOUR_MILLIS + 5 * HOUR_MILLIS / 2;
    let purged = s.purge_expired_events(now).await.unwrap();
    let old_exposures = batches
        .iter()
        .flat_map(|b| &b.exposures)
        .filter(|e| e.at < watermark)
        .count() as u64;
    let old_tracks = batches
        .iter()
        .flat_map(|b| &b.track_events)
        .filter(|t| t.at < watermark)
        .count() as u64;
    assert!(old_exposures > 0 && old_tracks > 0);
    assert_eq!(
        (purged.exposures, purged.track_events),
        (old_exposures, old_tracks)
    );
    let after = s.count_events("p", "dev").await.unwrap();
    assert_eq!(after.exposures, before.exposures - old_exposures as i64);
    assert_eq!(after.track_events, before.track_events - old_tracks as i64);
    assert!(
        s.list_track_events("p", "dev", 10_000)
            .await
            .unwrap()
            .iter()
            .all(|t| t.at >= watermark)
    );
    // Another environment keeps everything; a second pass finds nothing more.
    assert_eq!(s.count_events("p", "prod").await.unwrap(), before);
    assert!(s.purge_expired_events(now).await.unwrap().is_empty());

    // The results are unchanged wherever they are read from roll-ups and intact hours.
    let cutoffs: Vec<Millis> = rollup_cutoffs(&batches)
        .into_iter()
        .filter(|until| *until >= watermark || (until + 1) % HOUR_MILLIS == 0)
        .collect();
    let check = async |batches: &[EventBatch]| {
        for &until in &cutoffs {
            let got = s
                .experiment_aggregates("p", "dev", "x", &metrics, until)
                .await
                .unwrap();
            assert_aggregates_match(
                &got,
                &aggregates_by_definition(batches, &metrics, until),
                until,
            );
        }
    };
    check(&batches).await;

    // Then more events: units exposed again (some to another variation), and events of
    // every hour, those before the watermark arriving late included. The units' rebuilds
    // keep the rows of the purged hours.
    let mut late = Vec::new();
    for (n, i) in (1..60u64).step_by(2).enumerate() {
        let mut batch = EventBatch {
            batch_id: format!("late-{n}"),
            sdk_name: "vexil-test".into(),
            sdk_version: "1.0.0".into(),
            ..EventBatch::default()
        };
        let user = event_context(json!({"key": format!("u{i}")}));
        // Another variation late in the data: the unit is rebuilt, and it still counts for
        // every cut-off before then.
        batch.exposures.push(ExposureEvent {
            at: watermark + 5 * HOUR_MILLIS / 2 + i as i64 * 1000,
            flag_key: "checkout".into(),
            flag_version: 1,
            experiment_key: "x".into(),
            variation: ((i + 1) % 3) as i64,
            in_experiment: true,
            context: user.clone(),
        });
        for at in [T0 + HOUR_MILLIS + 7 * i as i64, watermark + 11 * i as i64] {
            batch.track_events.push(TrackEvent {
                at,
                name: "purchase".into(),
                value: Some(i as f64),
                data: None,
                context: user.clone(),
            });
        }
        late.push(batch);
    }
    for (n, batch) in late.iter().enumerate() {
        s.store_event_batch("p", "dev", batch).await.unwrap();
        if n % 3 == 1 {
            s.compact_analytics_once().await.unwrap();
        }
    }
    s.compact_analytics(std::time::Duration::MAX).await.unwrap();
    batches.extend(late);
    check(&batches).await;
    // The late old events expire at the next pass; the results stay.
    assert!(s.purge_expired_events(now).await.unwrap().track_events > 0);
    check(&batches).await;
    assert_eq!(s.analytics_backlog().await.unwrap(), (0, 0));

    // Two days from now every raw event has expired, and the batches they came in (received
    // now) go too; the results read from roll-ups stay.
    let later = now_millis() + 48 * HOUR_MILLIS;
    s.purge_expired_events(later).await.unwrap();
    assert_eq!(
        s.count_events("p", "dev").await.unwrap(),
        EventCounts::default()
    );
    for until in [T0 + 6 * HOUR_MILLIS - 1, later] {
        let got = s
            .experiment_aggregates("p", "dev", "x", &metrics, until)
            .await
            .unwrap();
        assert_aggregates_match(
            &got,
            &aggregates_by_definition(&batches, &metrics, until),
            until,
        );
    }
}

/// Stores, in both environments of project `p` (created here), exposures to experiment `x`
/// and track events of the user `key`, alone and in a multi-kind context, some in a batch
/// the compactor has not read yet; compacts the rest.
pub async fn store_events_of(key: &str, s: &Storage) {
    setup(s).await;
    let user = event_context(json!({"key": key, "attributes": {"email": key}}));
    let multi = event_context(json!({"kind": "multi", "contexts": [
        {"kind": "user", "key": key}, {"kind": "device", "key": "d-1"}]}));
    let batch = |id: &str, at: Millis| EventBatch {
        batch_id: id.into(),
        sdk_name: "vexil-test".into(),
        sdk_version: "1.0.0".into(),
        exposures: vec![ExposureEvent {
            at,
            flag_key: "checkout".into(),
            flag_version: 1,
            experiment_key: "x".into(),
            variation: 1,
            in_experiment: true,
            context: user.clone(),
        }],
        track_events: vec![
            TrackEvent {
                at: at + 1,
                name: "purchase".into(),
                value: Some(5.0),
                data: Some(json!({"buyer": key})),
                context: user.clone(),
            },
            TrackEvent {
                at: at + 2,
                name: "purchase".into(),
                value: None,
                data: None,
                context: multi.clone(),
            },
        ],
        summaries: Vec::new(),
    };
    for env in ["dev", "prod"] {
        s.store_event_batch("p", env, &batch("first", T0))
            .await
            .unwrap();
    }
    s.compact_analytics(std::time::Duration::MAX).await.unwrap();
    s.store_event_batch("p", "dev", &batch("pending", T0 + HOUR_MILLIS))
        .await
        .unwrap();
}
