//! The `vexil` binary, run as a user would.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn vexil(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_vexil"))
        .args(args)
        .output()
        .expect("run vexil");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `vexil eval --ruleset <ruleset> --flag <flag>`, then `rest`: the default and the contexts.
fn eval(ruleset: &str, flag: &str, rest: &[&str]) -> (i32, String, String) {
    let mut args = vec!["eval", "--ruleset", ruleset, "--flag", flag];
    args.extend(rest);
    vexil(&args)
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path: PathBuf = dir.path().join(name);
    std::fs::write(&path, text).expect("write");
    path.to_string_lossy().into_owned()
}

const RULESET: &str = r#"{"flags": [
  {"key": "checkout", "kind": "bool", "variations": [true, false], "on": true,
   "rules": [{"id": "staff", "clauses": [{"attribute": "email", "op": "ends_with", "values": ["@example.com"]}], "serve": {"variation": 0}}],
   "fallthrough": {"variation": 1}}
], "segments": []}"#;

/// A temporary folder with [`RULESET`] in it, and the file's path.
fn ruleset_file() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "ruleset.json", RULESET);
    (dir, path)
}

#[test]
fn validate_accepts_a_good_file_and_lists_each_problem_of_a_bad_one() {
    let (dir, good) = ruleset_file();
    let (code, out, _) = vexil(&["validate", &good]);
    assert_eq!(code, 0);
    assert!(out.contains("1 flags"), "{out}");

    let bad = write(
        &dir,
        "bad.json",
        r#"{"flags": [{"key": "f", "kind": "bool", "variations": [true], "off_variation": 3,
            "rules": [{"id": "r", "clauses": [{"attribute": "v", "op": "matches", "values": ["("]}], "serve": {"variation": 0}}],
            "fallthrough": {"variation": 0}}]}"#,
    );
    let (code, out, _) = vexil(&["validate", &bad]);
    assert_eq!(code, 1);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("flag \"f\": off_variation: ")),
        "{out}"
    );
    assert!(
        lines.iter().any(|l| l
            .starts_with("flag \"f\": rules[0].clauses[0].values[0]: invalid regular expression")),
        "{out}"
    );

    let broken = write(&dir, "broken.json", "{not json");
    let (code, _, err) = vexil(&["validate", &broken]);
    assert_eq!(code, 1);
    assert!(err.contains("not valid JSON"), "{err}");
}

#[test]
fn eval_prints_one_result_per_context() {
    let (dir, ruleset) = ruleset_file();
    let (code, out, _) = eval(
        &ruleset,
        "checkout",
        &[
            "--default",
            "false",
            "--context",
            r#"{"kind": "user", "key": "a", "attributes": {"email": "a@example.com"}}"#,
        ],
    );
    assert_eq!(code, 0);
    let result: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(result["value"], true);
    assert_eq!(result["reason"]["kind"], "RULE_MATCH");
    assert_eq!(result["reason"]["rule_id"], "staff");

    let contexts = write(
        &dir,
        "c.jsonl",
        "{\"key\": \"a\", \"attributes\": {\"email\": \"a@example.com\"}}\n{\"key\": \"b\"}\n\n{\"key\": \"\"}\n",
    );
    let (code, out, _) = eval(
        &ruleset,
        "checkout",
        &["--default", "false", "--contexts", &contexts],
    );
    assert_eq!(code, 0);
    let results: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["variation"], 0);
    assert_eq!(results[1]["reason"]["kind"], "FALLTHROUGH");
    assert_eq!(results[2]["reason"]["error_kind"], "INVALID_CONTEXT");
    assert_eq!(results[2]["value"], false);

    let (code, out, _) = eval(
        &ruleset,
        "nope",
        &["--default", "\"x\"", "--context", r#"{"key": "a"}"#],
    );
    assert_eq!(code, 0);
    assert!(out.contains("FLAG_NOT_FOUND"), "{out}");
}

#[test]
fn a_negative_default_is_taken_as_written() {
    let (_dir, ruleset) = ruleset_file();
    for default in ["-1", "-2.5", "-1e3"] {
        let (code, out, err) = eval(
            &ruleset,
            "missing",
            &["--default", default, "--context", r#"{"key":"alice"}"#],
        );
        assert_eq!(code, 0, "--default {default}: {err}");
        let result: Value = serde_json::from_str(out.trim()).unwrap();
        let expected: Value = serde_json::from_str(default).unwrap();
        assert_eq!(result["value"], expected, "{out}");
        assert_eq!(result["reason"]["error_kind"], "FLAG_NOT_FOUND", "{out}");
    }
    // A forgotten value is still an error, not a value.
    let (code, _, err) = eval(&ruleset, "f", &["--default", "--context", "{}"]);
    assert_ne!(code, 0);
    assert!(err.contains("--default"), "{err}");
}
