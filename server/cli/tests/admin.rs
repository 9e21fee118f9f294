//! The `vexil` admin commands against a real server on a loopback port (SQLite in a
//! temporary folder), run as a user would run them.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use vexil_proto::v1 as pb;
use vexil_testing::{BlockingServer, authed};

/// The arguments of a command line as a shell splits it: at spaces, except inside single
/// quotes.
fn words(text: &str) -> Vec<&str> {
    text.split('\'')
        .enumerate()
        .flat_map(|(index, part)| match index % 2 {
            0 => part.split_whitespace().collect(),
            _ => vec![part],
        })
        .collect()
}

/// A server on a runtime of its own, and a folder for the files the commands read and write.
struct Server {
    instance: BlockingServer,
    address: String,
    token: String,
    dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let instance = BlockingServer::sqlite();
        Server {
            address: instance.endpoint(),
            token: instance.root_token(),
            dir: tempfile::tempdir().expect("temporary folder"),
            instance,
        }
    }

    /// A server with the flag of [`FLAG`] created.
    fn with_flag() -> Server {
        let server = Server::start();
        let file = server.file("flag.json", FLAG);
        server.ok(&["flags", "create", "--file", &file]);
        server
    }

    /// Runs `vexil` with the server's address and (unless `token` is `None`) a token.
    fn run_as(&self, token: Option<&str>, args: &[&str]) -> (i32, String, String) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_vexil"));
        command
            .args(args)
            .env("VEXIL_SERVER", &self.address)
            .env_remove("VEXIL_TOKEN")
            .env_remove("VEXIL_PROJECT")
            .env_remove("VEXIL_ENVIRONMENT");
        if let Some(token) = token {
            command.env("VEXIL_TOKEN", token);
        }
        let output = command.output().expect("run vexil");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    fn run(&self, args: &[&str]) -> (i32, String, String) {
        self.run_as(Some(&self.token), args)
    }

    /// Runs `vexil`, expects success, and returns standard output.
    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(
            code, 0,
            "vexil {args:?} failed\nstdout: {out}\nstderr: {err}"
        );
        out
    }

    /// Runs `vexil`, expects the server's refusal (exit status 1) with `fragment` in its
    /// standard error.
    #[track_caller]
    fn refused(&self, args: &[&str], fragment: &str) {
        let (code, _, err) = self.run(args);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains(fragment), "{err}");
    }

    /// Runs `vexil`, expects it to fail with `fragment` in its standard error.
    #[track_caller]
    fn fails(&self, args: &[&str], fragment: &str) {
        let (code, _, err) = self.run(args);
        assert_ne!(code, 0, "vexil {args:?} succeeded");
        assert!(err.contains(fragment), "{err}");
    }

    #[track_caller]
    fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }

    fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path.to_string_lossy().into_owned()
    }
}

const FLAG: &str = r#"{
  "key": "checkout", "kind": "bool", "variations": [true, false],
  "off_variation": 1,
  "targets": [{"values": ["alice"], "variation": 0}],
  "rules": [{"id": "staff",
             "clauses": [{"attribute": "email", "op": "ends_with", "values": ["@example.com"]}],
             "serve": {"variation": 0}}],
  "fallthrough": {"rollout": {"variations": [{"variation": 0, "weight": 25000},
                                             {"variation": 1, "weight": 75000}]}},
  "name": "New checkout", "tags": ["web"]
}"#;

/// The text `field` of each item of a JSON array.
fn column<'a>(items: &'a Value, field: &str) -> Vec<&'a str> {
    items
        .as_array()
        .expect("a JSON array")
        .iter()
        .map(|item| item[field].as_str().expect("a text field"))
        .collect()
}

fn find<'a>(items: &'a Value, field: &str, value: &str) -> Option<&'a Value> {
    items
        .as_array()
        .expect("a JSON array")
        .iter()
        .find(|item| item[field] == value)
}

#[test]
fn flags_are_created_toggled_listed_audited_exported_and_imported() {
    let server = Server::start();
    let file = server.file("flag.json", FLAG);

    let out = server.ok(&["flags", "create", "--file", &file]);
    assert!(out.contains("created flag checkout"), "{out}");

    let out = server.ok(&["flags", "toggle", "checkout", "on"]);
    assert!(out.contains("is on in development"), "{out}");

    let flags = server.json(&["flags", "list", "--json"]);
    let flag = find(&flags, "key", "checkout").expect("checkout is listed");
    assert_eq!(flag["kind"], "bool");
    assert_eq!(flag["name"], "New checkout");
    assert_eq!(flag["tags"], serde_json::json!(["web"]));
    let config = find(&flag["configurations"], "environment", "development")
        .expect("the development configuration is listed");
    assert_eq!(config["on"], true);
    assert_eq!(config["off_variation"], 1);
    assert_eq!(config["rules"][0]["id"], "staff");
    assert_eq!(config["rules"][0]["clauses"][0]["op"], "ends_with");
    assert_eq!(config["targets"][0]["values"][0], "alice");
    assert_eq!(
        config["fallthrough"]["rollout"]["variations"][1]["weight"],
        75000
    );

    // The readable forms.
    let out = server.ok(&["flags", "list"]);
    let line = out
        .lines()
        .find(|l| l.starts_with("checkout"))
        .expect("a row for the flag");
    assert!(line.contains(" on "), "{out}");
    let out = server.ok(&["flags", "get", "checkout"]);
    assert!(out.contains("environment development: on"), "{out}");
    // Production is untouched.
    let flag = server.json(&["flags", "get", "checkout", "-e", "production", "--json"]);
    assert_eq!(flag["configurations"][0]["on"], false);
    assert_eq!(flag["configurations"][0]["rules"], serde_json::json!([]));

    // The audit log holds the creation and the toggle, newest first.
    let entries = server.json(&["audit", "list", "--json", "--resource", "flag_config"]);
    let actions = column(&entries, "action");
    assert!(actions.contains(&"flag_config.toggle"), "{actions:?}");
    let kinds = column(&entries, "resource_kind");
    assert!(kinds.iter().all(|kind| *kind == "flag_config"), "{entries}");
    let entries = server.json(&["audit", "list", "--json"]);
    let all: Vec<(&str, &str)> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["resource_key"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(all.contains(&("flag.create", "checkout")), "{all:?}");
    assert!(
        all.iter()
            .any(|(action, key)| action.contains("toggle") && *key == "checkout"),
        "{all:?}"
    );
    let toggle = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"].as_str().unwrap().contains("toggle"))
        .unwrap();
    assert_eq!(toggle["environment"], "development");
    assert!(toggle["time"].as_str().unwrap().ends_with('Z'));
    // Time filters: nothing happened before 2000 or will after 2999.
    let none = server.json(&["audit", "list", "--json", "--until", "2000-01-01"]);
    assert_eq!(none, serde_json::json!([]));
    let none = server.json(&["audit", "list", "--json", "--since", "2999-01-01T00:00:00Z"]);
    assert_eq!(none, serde_json::json!([]));
    let by_flag = server.json(&["audit", "list", "--json", "--resource", "flag:checkout"]);
    let kinds = column(&by_flag, "resource_kind");
    let keys = column(&by_flag, "resource_key");
    assert!(kinds.iter().all(|kind| *kind == "flag"), "{by_flag}");
    assert!(keys.iter().all(|key| *key == "checkout"), "{by_flag}");
    let production = server.json(&["audit", "list", "--json", "-e", "production"]);
    let environments = column(&production, "environment");
    assert!(
        environments.iter().all(|env| *env == "production"),
        "{production}"
    );
    let out = server.ok(&["audit", "list", "--actor", "nobody"]);
    assert_eq!(out.lines().count(), 1, "only the header: {out}");

    // Export development, import it into production: the same flag state there.
    let exported = server.ok(&["export"]);
    let ruleset: Value = serde_json::from_str(&exported).expect("the export is JSON");
    let flag = find(&ruleset["flags"], "key", "checkout").expect("exported");
    assert_eq!(flag["on"], true);
    assert_eq!(flag["rules"][0]["id"], "staff");
    let export_file = server.file("export.json", &exported);
    let result = server.json(&["import", &export_file, "-e", "production", "--json"]);
    assert_eq!(result["updated_flags"], serde_json::json!(["checkout"]));
    let reexported: Value =
        serde_json::from_str(&server.ok(&["export", "--environment", "production"])).unwrap();
    let again = find(&reexported["flags"], "key", "checkout").unwrap();
    for field in ["on", "off_variation", "targets", "rules", "fallthrough"] {
        assert_eq!(again[field], flag[field], "{field}");
    }

    // The file form of `get` is accepted by `update`.
    let form = server.json(&["flags", "get", "checkout", "--file-form"]);
    let mut form = form;
    form["rules"][0]["clauses"][0]["values"] = serde_json::json!(["@example.org"]);
    form["description"] = Value::from("now for .org");
    let updated = server.file("updated.json", &form.to_string());
    server.ok(&["flags", "update", "--file", &updated]);
    let flag = server.json(&["flags", "get", "checkout", "--json"]);
    assert_eq!(flag["description"], "now for .org");
    assert_eq!(
        flag["configurations"][0]["rules"][0]["clauses"][0]["values"][0],
        "@example.org"
    );
    // A stale version is refused.
    let (code, _, err) = server.run(&words("flags toggle checkout off --expected-version 1"));
    assert_eq!(code, 1);
    assert!(err.starts_with("vexil: ABORTED: "), "{err}");

    // Archive, restore, delete.
    assert_eq!(
        server.ok(&["flags", "archive", "checkout"]),
        "archived flag checkout\n"
    );
    let listed = server.json(&["flags", "list", "--json"]);
    assert!(find(&listed, "key", "checkout").is_none());
    assert_eq!(
        server.ok(&["flags", "archive", "checkout", "--restore"]),
        "restored flag checkout\n"
    );
    assert_eq!(
        server.ok(&["flags", "delete", "checkout"]),
        "deleted flag checkout\n"
    );
    let (code, _, err) = server.run(&["flags", "get", "checkout"]);
    assert_eq!(code, 1);
    assert!(err.starts_with("vexil: NOT_FOUND: "), "{err}");
}

#[test]
fn bad_input_and_missing_credentials_get_the_status_and_exit_1() {
    let server = Server::start();

    // An invalid rule: the server's INVALID_ARGUMENT names the field, and nothing is left.
    let bad = server.file(
        "bad.json",
        r#"{"key": "broken", "kind": "bool", "variations": [true, false],
            "rules": [{"id": "r", "clauses": [{"attribute": "email", "op": "matches", "values": ["("]}],
                       "serve": {"variation": 0}}],
            "fallthrough": {"variation": 0}}"#,
    );
    let (code, out, err) = server.run(&["flags", "create", "--file", &bad]);
    assert_eq!(code, 1, "{out}");
    assert!(err.starts_with("vexil: INVALID_ARGUMENT: "), "{err}");
    assert!(err.contains("rules[0].clauses[0].values[0]"), "{err}");
    assert!(!err.contains("Status {"), "no debug dump: {err}");
    let flags = server.json(&["flags", "list", "--json"]);
    assert_eq!(flags, serde_json::json!([]));

    // An unknown variation, refused when the flag itself is created.
    let bad = server.file(
        "bad2.json",
        r#"{"key": "broken", "kind": "bool", "variations": [true, false], "off_variation": 7,
            "fallthrough": {"variation": 0}}"#,
    );
    let (code, _, err) = server.run(&["flags", "create", "--file", &bad]);
    assert_eq!(code, 1);
    assert!(err.starts_with("vexil: INVALID_ARGUMENT: "), "{err}");
    assert!(err.contains("off_variation"), "{err}");

    // A file of the wrong shape is refused before anything is sent.
    let bad = server.file(
        "bad3.json",
        r#"{"key": "broken", "kind": "bool", "rules": {}}"#,
    );
    let (code, _, err) = server.run(&["flags", "create", "--file", &bad]);
    assert_eq!(code, 1);
    assert!(
        err.contains("rules: invalid type: map, expected a sequence"),
        "{err}"
    );

    // No token, or a bad one.
    let (code, _, err) = server.run_as(None, &["flags", "list"]);
    assert_eq!(code, 1);
    assert!(err.starts_with("vexil: UNAUTHENTICATED: "), "{err}");
    assert!(err.contains("VEXIL_TOKEN"), "{err}");
    let (code, _, err) = server.run_as(Some("not-a-token"), &["audit", "list"]);
    assert_eq!(code, 1);
    assert!(err.starts_with("vexil: UNAUTHENTICATED: "), "{err}");

    // No server there.
    let (code, _, err) = server.run(&["flags", "list", "--server", "http://127.0.0.1:9"]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("vexil: cannot connect to http://127.0.0.1:9"),
        "{err}"
    );
}

#[test]
fn segments_and_keys_are_managed() {
    let server = Server::start();
    let file = server.file(
        "segment.json",
        r#"{"key": "beta", "name": "Beta testers",
            "included": [{"values": ["alice"]}],
            "rules": [{"id": "s1", "clauses": [{"attribute": "plan", "op": "in", "values": ["pro"]}]}]}"#,
    );
    server.ok(&["segments", "create", "--file", &file]);
    let listed = server.json(&["segments", "list", "--json"]);
    let segment = find(&listed, "key", "beta").expect("listed");
    assert_eq!(segment["included"][0]["values"][0], "alice");
    assert_eq!(segment["rules"][0]["clauses"][0]["op"], "in");
    let update = server.file(
        "segment2.json",
        r#"{"key": "beta", "name": "Beta testers", "included": [{"values": ["alice", "bob"]}]}"#,
    );
    server.ok(&["segments", "update", "--file", &update]);
    let segment = server.json(&["segments", "get", "beta"]);
    assert_eq!(segment["included"][0]["values"][1], "bob");
    // The canonical form leaves out what is empty.
    assert_eq!(
        segment["rules"].as_array().map_or(0, Vec::len),
        0,
        "{segment}"
    );
    assert_eq!(
        server.json(&["segments", "delete", "beta", "--json"]),
        json!({ "deleted": "beta" })
    );
    let (code, _, err) = server.run(&["segments", "get", "beta"]);
    assert_eq!(code, 1);
    assert!(err.starts_with("vexil: NOT_FOUND: "), "{err}");

    let issued = server.json(&words("keys issue --kind server --name ci --json"));
    assert_eq!(issued["kind"], "server");
    assert!(!issued["secret"].as_str().unwrap().is_empty());
    let id = issued["id"].as_i64().unwrap().to_string();
    let keys = server.json(&["keys", "list", "--json"]);
    assert!(keys.as_array().unwrap().iter().any(|k| k["name"] == "ci"));
    let rotated = server.json(&["keys", "rotate", &id, "--json"]);
    assert_ne!(rotated["id"].as_i64().unwrap().to_string(), id);
    let new_id = rotated["id"].as_i64().unwrap().to_string();
    let revoked = server.json(&["keys", "revoke", &new_id, "--json"]);
    assert!(revoked["revoked_at"].is_string());
    let out = server.ok(&["keys", "list", "--include-revoked"]);
    assert!(out.contains("revoked"), "{out}");
}

#[test]
fn environments_and_their_allowed_origins_are_managed_and_audited() {
    let server = Server::start();
    let created = server.json(&words(
        "environments create staging --allowed-origin https://Staging.Example.com/ \
         --allowed-origin https://*.preview.example.com --json",
    ));
    assert_eq!(
        created["allowed_origins"],
        json!([
            "https://staging.example.com",
            "https://*.preview.example.com"
        ])
    );
    assert_eq!(created["name"], "staging");
    // An update without origins keeps them; with some, replaces them.
    let renamed = server.json(&words("environments update staging --name Staging --json"));
    assert_eq!(renamed["allowed_origins"], created["allowed_origins"]);
    assert_eq!(renamed["version"], 2);
    let replaced = server.json(&words(
        "environments update staging --allowed-origin * --json",
    ));
    assert_eq!(replaced["allowed_origins"], json!(["*"]));
    assert_eq!(replaced["name"], "Staging");
    let local = server.json(&words(
        "environments update staging --local-pages-only --json",
    ));
    assert_eq!(local["allowed_origins"], json!([]));
    let (code, _, err) = server.run(&words(
        "environments update staging --allowed-origin https://example.com/app",
    ));
    assert_eq!(code, 1);
    assert!(
        err.starts_with(
            "vexil: INVALID_ARGUMENT: allowed_origins.origins[0]: `https://example.com/app`"
        ),
        "{err}"
    );
    let table = server.ok(&["environments", "list"]);
    assert!(table.contains("ALLOWED ORIGINS"), "{table}");
    assert!(table.contains("(this machine's pages)"), "{table}");
    let listed = server.json(&["environments", "list", "--json"]);
    let keys = column(&listed, "key");
    assert_eq!(keys, ["development", "production", "staging"]);
    // Every change is in the audit log with the origins before and after.
    let audit = server.json(&words("audit list --resource environment:staging --json"));
    let entries = audit.as_array().unwrap();
    assert_eq!(entries.len(), 4, "{audit}");
    assert_eq!(entries[0]["action"], "environment.update");
    assert_eq!(entries[0]["before"]["allowed_origins"], json!(["*"]));
    assert_eq!(entries[0]["after"]["allowed_origins"], json!([]));
}

#[test]
fn raw_events_are_kept_for_the_retention_period_and_a_context_is_erased_on_request() {
    let server = Server::start();
    let kept = server.json(&words(
        "environments update development --event-retention-days 30 --json",
    ));
    assert_eq!(kept["event_retention_days"], 30);
    let table = server.ok(&["environments", "list"]);
    assert!(
        table.contains("30 d") && table.contains("forever"),
        "{table}"
    );
    let (code, _, err) = server.run(&words(
        "environments update development --event-retention-days 4000",
    ));
    assert_eq!(code, 1);
    assert!(
        err.starts_with("vexil: INVALID_ARGUMENT: event_retention_days: 4000 days"),
        "{err}"
    );

    publish_experiment_events(&server);
    let erased = server.json(&["contexts", "erase", "user-3", "--json"]);
    assert_eq!(
        erased,
        json!({
            "environments": ["development", "production"],
            "exposures": 1,
            "track_events": 1,
            "experiment_units": 1,
            "rollup_rows": erased["rollup_rows"],
        })
    );
    // Again: nothing left, and still a success.
    let again = server.json(&["contexts", "erase", "user-3", "-e", "development", "--json"]);
    assert_eq!(again["environments"], json!(["development"]));
    assert_eq!(again["exposures"], 0);
    assert_eq!(again["track_events"], 0);
    let out = server.ok(&["contexts", "erase", "user-4", "--kind", "user"]);
    assert!(out.contains("EXPOSURES"), "{out}");
    let (code, _, err) = server.run(&["contexts", "erase", "user-3", "--kind", "multi"]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("vexil: INVALID_ARGUMENT: context_kind: "),
        "{err}"
    );
    // Audited under a hash of the key.
    let audit = server.json(&["audit", "list", "--resource", "context", "--json"]);
    let entries = audit.as_array().unwrap();
    assert_eq!(entries.len(), 3, "{audit}");
    assert!(entries.iter().all(|e| e["action"] == "context.erase"));
    assert!(!audit.to_string().contains("user-3"), "{audit}");
}

#[test]
fn offline_commands_need_no_server() {
    // `validate` runs with a server address that leads nowhere and no token.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.json");
    std::fs::write(&path, r#"{"flags": [], "segments": []}"#).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_vexil"))
        .args(["validate", Path::new(&path).to_str().unwrap()])
        .env("VEXIL_SERVER", "http://127.0.0.1:9")
        .output()
        .unwrap();
    assert!(output.status.success());
}

/// Publishes exposures (users 0..40, even ones to the control), conversions (every third
/// user) and an evaluation summary with the development server key.
fn publish_experiment_events(server: &Server) {
    let key = server.instance.sdk_key("development", "server");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let at = |offset: i64| prost_types::Timestamp {
        seconds: now - 60 + offset,
        nanos: 0,
    };
    let user = |i: i32| {
        Some(pb::Context {
            kind: "user".into(),
            key: format!("user-{i}"),
            ..Default::default()
        })
    };
    let mut batch = pb::PublishRequest {
        batch_id: "cli-test".into(),
        sdk_name: "test".into(),
        sdk_version: "0".into(),
        ..Default::default()
    };
    for i in 0..40 {
        batch.exposures.push(pb::ExposureEvent {
            time: Some(at(0)),
            flag_key: "checkout".into(),
            flag_version: 2,
            experiment_key: "checkout-test".into(),
            variation: (i % 2) as u32,
            context: user(i),
            in_experiment: true,
        });
        if i % 3 == 0 {
            batch.track_events.push(pb::TrackEvent {
                time: Some(at(10)),
                name: "purchase".into(),
                context: user(i),
                value: None,
                data: None,
            });
        }
    }
    batch.summaries.push(pb::EvaluationSummary {
        start: Some(at(0)),
        end: Some(at(30)),
        flag_key: "checkout".into(),
        counters: vec![pb::EvaluationCounter {
            flag_version: 2,
            variation: Some(1),
            error_kind: 0,
            count: 40,
        }],
    });
    server.instance.block_on(async {
        let mut events = server.instance.events().await;
        events.publish(authed(batch, &key)).await.expect("publish");
    });
}

#[test]
fn experiments_are_designed_run_and_read() {
    let server = Server::start();
    let flag = server.file("checkout.json", FLAG);
    server.ok(&["flags", "create", "--file", &flag]);
    let metric = server.json(&words(
        "metrics create purchase-rate --event purchase --kind conversion --json",
    ));
    assert_eq!(metric["kind"], "conversion");
    // A ratio metric needs its denominator's event.
    let per_visit = "metrics create per-visit --event purchase --kind ratio";
    server.fails(&words(per_visit), "--denominator");
    let ratio = server.json(&words(&format!("{per_visit} --denominator visit --json")));
    assert_eq!(ratio["kind"], "ratio");
    assert_eq!(ratio["denominator_event"], "visit");
    let created = server.ok(&words(
        "metrics create visits --event purchase --kind ratio --denominator visit",
    ));
    assert_eq!(
        created,
        "created metric visits (ratio of event purchase per event visit)\n"
    );
    // A quantile metric needs its level, and the server refuses one outside (0, 1).
    let p90 = "metrics create latency-p90 --event latency --kind quantile";
    server.fails(&words(p90), "--quantile");
    server.fails(&words(&format!("{p90} --quantile 1.5")), "metric.quantile");
    let quantile = server.json(&words(&format!("{p90} --quantile 0.9 --json")));
    assert_eq!(quantile["kind"], "quantile");
    assert_eq!(quantile["quantile"], 0.9);
    let metrics = server.json(&["metrics", "list", "--json"]);
    assert!(find(&metrics, "key", "purchase-rate").is_some());
    let listed = server.ok(&["metrics", "list"]);
    assert!(listed.contains("purchase / visit"), "{listed}");
    assert!(listed.contains("quantile p90"), "{listed}");

    // A bad design is refused, naming the field.
    let (code, _, err) = server.run(&words(
        "experiments create bad --flag checkout --variations 0,1 --weights 50,40 \
         --primary purchase-rate --mde 0.1 --baseline 0.2",
    ));
    assert_eq!(code, 1);
    assert!(
        err.contains("INVALID_ARGUMENT") && err.contains("experiment.variations"),
        "{err}"
    );

    let created = server.json(&words(
        "experiments create checkout-test --flag checkout --rule staff --variations 0,1 \
         --primary purchase-rate --mde 0.1 --baseline 0.2 \
         --hypothesis 'staff buy more with the new checkout' --json",
    ));
    assert_eq!(created["status"], "draft");
    assert_eq!(created["rule_id"], "staff");
    assert_eq!(created["one_sided"], false);
    let two_sided_size = created["required_sample_size"].as_u64().unwrap();
    assert!(two_sided_size > 1000);
    // One-sided: the whole alpha in one tail, fewer contexts for the same power.
    let one_sided = server.json(&words(
        "experiments create checkout-one-way --flag checkout --variations 0,1 \
         --primary purchase-rate --mde 0.1 --baseline 0.2 --one-sided --json",
    ));
    assert_eq!(one_sided["one_sided"], true);
    assert!(one_sided["required_sample_size"].as_u64().unwrap() < two_sided_size);
    let shown = server.ok(&["experiments", "get", "checkout-test"]);
    assert!(shown.contains("contexts per variation"), "{shown}");

    let started = server.json(&["experiments", "start", "checkout-test", "--json"]);
    assert_eq!(started["status"], "running");
    let running = server.json(&["experiments", "list", "--status", "running", "--json"]);
    assert_eq!(running.as_array().unwrap().len(), 1);
    let drafts = server.ok(&["experiments", "list", "--status", "draft"]);
    assert_eq!(
        drafts.lines().count(),
        2,
        "the header and the one-sided draft: {drafts}"
    );
    assert!(drafts.contains("checkout-one-way"), "{drafts}");

    publish_experiment_events(&server);
    let results = server.json(&["experiments", "results", "checkout-test", "--json"]);
    let contexts: Vec<u64> = results["exposures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["contexts"].as_u64().unwrap())
        .collect();
    assert_eq!(contexts, [20, 20]);
    assert_eq!(results["srm"]["mismatch"], false);
    // Every third user converted: 0, 6, 12, … among the even (control) users.
    let metric = &results["metrics"][0];
    assert_eq!(metric["variations"][0]["sum"], 7.0);
    assert_eq!(metric["variations"][1]["sum"], 7.0);
    assert!(metric["variations"][1]["p_value"].as_f64().is_some());
    // 7 of 20 in each: rate 0.35, Bernoulli variance n·p(1 − p)/(n − 1).
    let variance = metric["variations"][0]["variance"].as_f64().unwrap();
    assert!(
        (variance - 20.0 * 0.35 * 0.65 / 19.0).abs() < 1e-12,
        "{variance}"
    );
    let relative = &metric["variations"][1]["relative_lift"];
    assert_eq!(relative["estimate"], 0.0);
    assert!(relative["lower"].as_f64().unwrap() < 0.0 && relative["upper"].as_f64().unwrap() > 0.0);
    assert_eq!(metric["variations"][1]["relative_lift_note"], Value::Null);
    // Equal rates and sizes: a coin flip, and the same expected loss either way.
    let bayesian = &metric["variations"][1]["bayesian"];
    assert!((bayesian["chance_to_beat_control"].as_f64().unwrap() - 0.5).abs() < 1e-9);
    let loss = bayesian["expected_loss"].as_f64().unwrap();
    assert!(loss > 0.0);
    assert!((bayesian["expected_loss_of_control"].as_f64().unwrap() - loss).abs() < 1e-9);

    let svg = server.dir.path().join("lift.svg");
    let svg_arg = svg.to_string_lossy().into_owned();
    let table = server.ok(&["experiments", "results", "checkout-test", "--svg", &svg_arg]);
    assert!(table.contains("sample ratio"), "{table}");
    assert!(table.contains("purchase-rate"), "{table}");
    assert!(table.contains("ABSOLUTE LIFT"), "{table}");
    let chart = std::fs::read_to_string(&svg).expect("chart written");
    assert!(chart.starts_with("<svg"), "{chart}");
    assert!(chart.contains("purchase-rate"));
    assert!(chart.trim_end().ends_with("</svg>"));

    let stopped = server.json(&["experiments", "stop", "checkout-test", "--json"]);
    assert_eq!(stopped["status"], "stopped");
    let decided = server.json(&words(
        "experiments decide checkout-test --ship 1 --apply --rationale cleaner --json",
    ));
    assert_eq!(decided["decision"]["variation"], 1);
    assert_eq!(decided["decision"]["applied"], true);
    let exported: Value = serde_json::from_str(&server.ok(&["export"])).expect("export is JSON");
    let checkout = find(&exported["flags"], "key", "checkout").expect("flag exported");
    assert_eq!(
        checkout["rules"][0]["serve"],
        serde_json::json!({"variation": 1})
    );

    let usage = server.json(&["flags", "usage", "checkout", "--json"]);
    assert_eq!(usage[0]["count"], 40);
    assert_eq!(usage[0]["variation"], 1);
    let usage_text = server.ok(&["flags", "usage"]);
    assert!(usage_text.contains("EVALUATIONS") && usage_text.contains("checkout"));
    // `checkout` served one variation only, but it was created moments ago: a flag younger
    // than the period is not judged (the server's experiments tests cover older flags).
    let stale = server.json(&["flags", "stale", "--days", "7", "--json"]);
    assert!(stale.as_array().is_some(), "{stale}");
    assert!(find(&stale, "flag", "checkout").is_none(), "{stale}");
}

#[test]
fn history_is_listed_compared_and_rolled_back() {
    let server = Server::start();
    let file = server.file("flag.json", FLAG);
    server.ok(&["flags", "create", "--file", &file]);
    server.ok(&["flags", "toggle", "checkout", "on"]);

    let history = server.json(&["flags", "history", "checkout", "--json"]);
    let versions: Vec<i64> = history
        .as_array()
        .expect("a list")
        .iter()
        .map(|v| v["version"].as_i64().expect("a number"))
        .collect();
    let newest = versions[0];
    let expected: Vec<i64> = (1..=newest).rev().collect();
    assert_eq!(versions, expected, "newest first, every version");
    assert_eq!(history[0]["action"], "flag_config.toggle");
    assert_eq!(history[0]["model"]["on"], true);
    let out = server.ok(&["flags", "history", "checkout"]);
    assert!(
        out.starts_with("VERSION") && out.contains("flag_config.toggle"),
        "{out}"
    );

    let before = (newest - 1).to_string();
    let diff = server.json(&["flags", "diff", "checkout", &before, "--json"]);
    assert_eq!(
        diff["differences"],
        json!([{ "path": "/on", "before": false, "after": true }])
    );
    let out = server.ok(&["flags", "diff", "checkout", &before]);
    assert!(out.contains("/on") && out.contains("false"), "{out}");
    let shown = server.json(&["flags", "version", "checkout", &before, "--json"]);
    assert_eq!(shown["model"]["on"], false);
    assert_eq!(shown["model"]["rules"][0]["id"], "staff");
    let at = history[0]["recorded_at"]
        .as_str()
        .expect("a time")
        .to_owned();
    let in_force = server.json(&["flags", "version", "checkout", "--at", &at, "--json"]);
    assert_eq!(in_force["version"], newest);

    let out = server.ok(&["flags", "rollback", "checkout", "--to-version", &before]);
    assert!(
        out.contains("rolled back flag checkout in development"),
        "{out}"
    );
    let flag = server.json(&["flags", "get", "checkout", "--json"]);
    assert_eq!(flag["configurations"][0]["on"], false);
    let (code, _, err) = server.run(&["flags", "rollback", "checkout"]);
    assert_eq!(code, 2, "a version or a time is required: {err}");
    server.refused(&["flags", "version", "checkout", "99"], "NOT_FOUND");

    // Segments have the same commands.
    let segment = server.file(
        "segment.json",
        r#"{"key": "beta", "included": [{"values": ["ann"]}]}"#,
    );
    server.ok(&["segments", "create", "--file", &segment]);
    let wider = server.file(
        "wider.json",
        r#"{"key": "beta", "included": [{"values": ["ann", "bob"]}]}"#,
    );
    server.ok(&["segments", "update", "--file", &wider]);
    let diff = server.json(&["segments", "diff", "beta", "1", "2", "--json"]);
    assert_eq!(diff["differences"][0]["path"], "/included/0/values/1");
    server.ok(&["segments", "rollback", "beta", "--to-version", "1"]);
    let versions = server.json(&["segments", "history", "beta", "--json"]);
    assert_eq!(versions[0]["action"], "segment.rollback");

    // The environment as of the toggle: a dry run, then the rollback.
    let out = server.ok(&words(&format!(
        "environments rollback development --at {at} --dry-run"
    )));
    assert!(out.contains("would restore"), "{out}");
    let done = server.json(&words(&format!(
        "environments rollback development --at {at} --json"
    )));
    let restored = done["restored"].as_array().expect("a list");
    assert!(
        restored
            .iter()
            .any(|r| r["kind"] == "flag" && r["key"] == "checkout" && r["from_version"] == newest),
        "{done}"
    );
    let flag = server.json(&["flags", "get", "checkout", "--json"]);
    assert_eq!(flag["configurations"][0]["on"], true);
}

#[test]
fn changes_are_scheduled_listed_cancelled_and_applied() {
    let server = Server::start();
    let file = server.file("flag.json", FLAG);
    server.ok(&["flags", "create", "--file", &file]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let in_an_hour = (now + 3600).to_string();

    let out = server.ok(&words(&format!(
        "flags schedule checkout --at {in_an_hour} on --comment launch"
    )));
    assert!(
        out.contains("turn on flag checkout in development"),
        "{out}"
    );
    let listed = server.json(&["flags", "scheduled", "--json"]);
    assert_eq!(listed[0]["state"], "pending");
    assert_eq!(listed[0]["edit"], json!({ "on": true }));
    assert_eq!(listed[0]["comment"], "launch");
    let id = listed[0]["id"].as_i64().expect("an id").to_string();
    let out = server.ok(&["flags", "unschedule", &id]);
    assert!(out.contains("(cancelled)"), "{out}");
    server.refused(&["flags", "unschedule", &id], "FAILED_PRECONDITION");
    let (code, _, err) = server.run(&["flags", "schedule", "checkout", "--at", &in_an_hour]);
    assert_eq!(code, 2, "on, off or a file is required: {err}");

    // Due at once: the server applies it within its scheduling interval.
    let file_form = server.file(
        "scheduled.json",
        &server.ok(&["flags", "get", "checkout", "--file-form"]),
    );
    server.ok(&words(&format!(
        "flags schedule checkout --at 2020-01-01 --file '{file_form}'"
    )));
    server.ok(&["flags", "schedule", "checkout", "--at", "2020-01-01", "on"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let listed = server.json(&["flags", "scheduled", "checkout", "--json"]);
        let applied = listed
            .as_array()
            .expect("a list")
            .iter()
            .filter(|x| x["state"] == "applied")
            .count();
        if applied == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not applied: {listed}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let flag = server.json(&["flags", "get", "checkout", "--json"]);
    assert_eq!(flag["configurations"][0]["on"], true);
    let out = server.ok(&["flags", "scheduled", "--pending"]);
    assert_eq!(out.lines().count(), 1, "only the header: {out}");
}

#[test]
fn ramps_are_started_listed_paused_resumed_and_cancelled() {
    let server = Server::with_flag();
    let out = server.ok(&words(
        "flags ramp start checkout --variation 0 --baseline 1 --steps 10%:1h,50:2h,100",
    ));
    assert!(
        out.contains("running at step 1 of 3 (10 % get variation 0)"),
        "{out}"
    );
    let ramps = server.json(&["flags", "ramp", "list", "--json"]);
    assert_eq!(ramps[0]["state"], "running");
    assert_eq!(ramps[0]["steps"][1]["duration_seconds"], 7200.0);
    let flag = server.json(&["flags", "get", "checkout", "--json"]);
    assert_eq!(
        flag["configurations"][0]["fallthrough"]["rollout"]["variations"][0],
        json!({ "variation": 0, "weight": 10000 })
    );
    let id = ramps[0]["id"].as_i64().expect("an id").to_string();
    assert!(
        server
            .ok(&["flags", "ramp", "pause", &id])
            .contains("paused")
    );
    assert!(
        server
            .ok(&["flags", "ramp", "resume", &id])
            .contains("running")
    );
    assert!(
        server
            .ok(&["flags", "ramp", "cancel", &id])
            .contains("cancelled")
    );
    server.refused(&["flags", "ramp", "cancel", &id], "FAILED_PRECONDITION");
    server.refused(
        &words("flags ramp start checkout --variation 0 --baseline 1 --steps 10:1w"),
        "a duration is",
    );
}

#[test]
fn a_guarded_ramp_is_started_and_its_guardrails_read() {
    let server = Server::with_flag();
    server.ok(&words(
        "metrics create retention --event return --kind conversion",
    ));
    let start = |guard: &'static [&'static str]| {
        let mut args =
            words("flags ramp start checkout --variation 0 --baseline 1 --steps 10:1h,100");
        args.extend_from_slice(guard);
        args
    };
    let out = server.ok(&start(&["--guard", "retention", "--guard-alpha", "0.01"]));
    assert!(out.contains("guarded by retention (alpha 0.01)"), "{out}");
    let ramps = server.json(&["flags", "ramp", "list", "--json"]);
    let id = ramps[0]["id"].as_i64().expect("an id");
    assert_eq!(
        ramps[0]["guard"],
        json!({ "metrics": [{ "metric_key": "retention", "direction": "increase" }], "alpha": 0.01 })
    );
    assert_eq!(ramps[0]["experiment_key"], format!("vexil-ramp-{id}"));
    let results = server.json(&["flags", "ramp", "results", &id.to_string(), "--json"]);
    assert_eq!(results["experiment"], format!("vexil-ramp-{id}"));
    assert_eq!(results["metrics"][0]["metric"]["metric_key"], "retention");
    // A metric the project does not have is refused, naming the field.
    server.ok(&["flags", "ramp", "cancel", &id.to_string()]);
    server.refused(
        &start(&["--guard", "latency:decrease"]),
        "guard.metrics[0].metric_key",
    );
}

#[test]
fn global_options_go_before_or_after_the_subcommand() {
    let server = Server::with_flag();
    server.ok(&["-e", "production", "flags", "toggle", "checkout", "on"]);
    let before = server.json(&["--json", "-e", "production", "flags", "get", "checkout"]);
    let after = server.json(&["flags", "get", "checkout", "-e", "production", "--json"]);
    assert_eq!(before, after);
    assert_eq!(before["configurations"][0]["environment"], "production");
    assert_eq!(before["configurations"][0]["on"], true);
    // The audit log filters by environment only when -e is given, wherever it is.
    let everywhere = server.json(&["--json", "audit", "list"]);
    let production = server.json(&["-e", "production", "--json", "audit", "list"]);
    let everywhere = everywhere.as_array().expect("a list");
    let production = production.as_array().expect("a list");
    assert!(production.len() < everywhere.len());
    assert!(
        production.iter().all(|e| e["environment"] == "production"),
        "{production:?}"
    );
}

#[test]
fn completions_are_printed_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let output = Command::new(env!("CARGO_BIN_EXE_vexil"))
            .args(["completions", shell])
            .output()
            .expect("run vexil");
        assert!(output.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&output.stdout);
        assert!(
            script.contains("vexil") && script.contains("rollback"),
            "{shell}: {script}"
        );
    }
}

#[test]
fn projects_and_admin_tokens_are_managed() {
    let server = Server::start();
    let out = server.ok(&["projects", "create", "shop", "--name", "Shop"]);
    assert!(out.contains("shop") && out.contains("Shop"), "{out}");
    server.ok(&words("projects update shop --description 'the web shop'"));
    let shop = server.json(&["projects", "get", "shop", "--json"]);
    assert_eq!(shop["description"], "the web shop");
    assert_eq!(shop["name"], "Shop", "what is not given stays");
    let all = server.json(&["projects", "list", "--json"]);
    assert!(find(&all, "key", "default").is_some() && find(&all, "key", "shop").is_some());

    // A token with the viewer role on shop: it reads shop and nothing else.
    let created = server.json(&words(
        "tokens create carol --role shop=viewer --description 'read only' --json",
    ));
    let secret = created["secret"].as_str().expect("a secret").to_owned();
    let id = created["id"].as_str().expect("an id").to_owned();
    assert_eq!(
        created["roles"],
        json!([{ "project": "shop", "role": "viewer" }])
    );
    let (code, out, err) = server.run_as(Some(&secret), &["projects", "get", "shop"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = server.run_as(
        Some(&secret),
        &["--project", "shop", "environments", "create", "qa"],
    );
    assert_eq!(code, 1);
    assert!(err.contains("PERMISSION_DENIED"), "{err}");
    let changed = server.ok(&["tokens", "roles", &id, "--role", "shop=admin"]);
    assert!(changed.ends_with(": shop=admin\n"), "{changed}");
    let (code, out, err) = server.run_as(
        Some(&secret),
        &["--project", "shop", "environments", "create", "qa"],
    );
    assert_eq!(code, 0, "{out}{err}");
    let out = server.ok(&["tokens", "list"]);
    assert!(out.contains("carol") && out.contains("shop=admin"), "{out}");
    server.ok(&["tokens", "revoke", &id]);
    let (code, _, err) = server.run_as(Some(&secret), &["projects", "get", "shop"]);
    assert_eq!(code, 1);
    assert!(err.contains("UNAUTHENTICATED"), "{err}");
    server.refused(
        &["tokens", "create", "dave", "--role", "shop=owner"],
        "is not a role",
    );

    assert_eq!(
        server.ok(&["projects", "delete", "shop"]),
        "deleted project shop\n"
    );
    server.refused(&["projects", "get", "shop"], "NOT_FOUND");
}
