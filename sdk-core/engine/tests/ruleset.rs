//! Building, patching and exporting rulesets.

use serde_json::{Value, json};
use vexil_engine::{Context, ErrorKind, Patch, Reason, ResourceKind, Ruleset, ValueKind};

fn bool_flag(key: &str, serve: usize) -> Value {
    json!({"key": key, "kind": "bool", "variations": [true, false], "on": true, "fallthrough": {"variation": serve}})
}

fn alice() -> Context {
    Context::user("alice").unwrap()
}

#[test]
fn patch_upserts_and_deletes_flags_and_segments() {
    let base = Ruleset::from_value(
        &json!({"version": 1, "flags": [bool_flag("a", 0), bool_flag("b", 0)],
        "segments": [{"key": "s", "included": [{"values": ["alice"]}]}]}),
    )
    .unwrap();
    let patched = base.patched(&Patch {
        version: 2,
        upsert_flags: vec![bool_flag("a", 1), bool_flag("c", 0)],
        delete_flags: vec!["b".into()],
        upsert_segments: vec![json!({"key": "t", "included": [{"values": ["bob"]}]})],
        delete_segments: vec!["s".into()],
    });
    assert_eq!(patched.version(), 2);
    assert_eq!(patched.flag_keys().collect::<Vec<_>>(), ["a", "c"]);
    assert!(!patched.bool_variation("a", &alice(), true));
    assert_eq!(
        patched.evaluate("b", &alice(), ValueKind::Bool).reason,
        Reason::Error {
            error_kind: ErrorKind::FlagNotFound
        }
    );
    assert!(patched.segment_json("s").is_none());
    assert!(patched.segment_json("t").is_some());
    // The base is untouched.
    assert!(base.bool_variation("a", &alice(), false));
    assert_eq!(base.version(), 1);
}

#[test]
fn patch_rechecks_references_across_flags() {
    let dependent = json!({"key": "child", "kind": "bool", "variations": [true, false], "on": true,
        "prerequisites": [{"key": "parent", "variation": 0}], "off_variation": 1, "fallthrough": {"variation": 0}});
    let base = Ruleset::from_value(&json!({"flags": [bool_flag("parent", 0), dependent]})).unwrap();
    assert!(base.problems().is_empty());
    assert!(base.bool_variation("child", &alice(), false));

    // Deleting the prerequisite makes the dependent malformed, with a problem naming it.
    let without_parent = base.patched(&Patch {
        version: 2,
        delete_flags: vec!["parent".into()],
        ..Patch::default()
    });
    assert!(without_parent.is_malformed("child"));
    let problem = &without_parent.problems()[0];
    assert_eq!(
        (
            problem.resource,
            problem.key.as_str(),
            problem.path.as_str()
        ),
        (ResourceKind::Flag, "child", "prerequisites[0].key")
    );

    // Bringing it back, as a cycle, makes both malformed; fixing the cycle heals both.
    let cyclic_parent = json!({"key": "parent", "kind": "bool", "variations": [true, false], "on": true,
        "prerequisites": [{"key": "child", "variation": 0}], "fallthrough": {"variation": 0}});
    let cyclic = without_parent.patched(&Patch {
        version: 3,
        upsert_flags: vec![cyclic_parent],
        ..Patch::default()
    });
    assert!(cyclic.is_malformed("child") && cyclic.is_malformed("parent"));
    assert_eq!(cyclic.problems().len(), 2, "{:?}", cyclic.problems());
    let healed = cyclic.patched(&Patch {
        version: 4,
        upsert_flags: vec![bool_flag("parent", 0)],
        ..Patch::default()
    });
    assert!(healed.problems().is_empty(), "{:?}", healed.problems());
    assert!(healed.bool_variation("child", &alice(), false));
}

#[test]
fn a_flag_that_does_not_fit_the_model_is_reported_and_others_still_work() {
    let ruleset = Ruleset::from_value(&json!({"flags": [
        bool_flag("good", 0),
        {"key": "bad", "kind": "bool", "variations": [true], "fallthrough": {"variation": 0},
         "rules": [{"id": "r", "clauses": [{"attribute": "a", "op": "frobnicate", "values": [1]}], "serve": {"variation": 0}}]},
        {"kind": "bool"}
    ]}))
    .unwrap();
    assert!(ruleset.bool_variation("good", &alice(), false));
    assert_eq!(
        ruleset.evaluate("bad", &alice(), ValueKind::Bool).reason,
        Reason::Error {
            error_kind: ErrorKind::MalformedFlag
        }
    );
    let paths: Vec<(String, String)> = ruleset
        .problems()
        .iter()
        .map(|p| (p.key.clone(), p.path.clone()))
        .collect();
    assert!(
        paths.contains(&("bad".into(), "rules[0].clauses[0].op".into())),
        "{paths:?}"
    );
    assert!(paths.iter().any(|(k, _)| k == "flags[2]"), "{paths:?}");
    assert!(
        ruleset
            .problems()
            .iter()
            .any(|p| p.message.contains("frobnicate"))
    );
}

#[test]
fn shape_errors_are_typed_not_panics() {
    assert!(Ruleset::from_json("{").is_err());
    assert!(Ruleset::from_json("[]").is_err());
    assert!(Ruleset::from_json(r#"{"flags": {}}"#).is_err());
    assert!(Ruleset::from_json(r#"{"version": -1}"#).is_err());
    assert!(Ruleset::from_json(r#"{}"#).unwrap().problems().is_empty());
}

#[test]
fn duplicate_keys_are_problems() {
    let ruleset = Ruleset::from_value(&json!({"flags": [bool_flag("a", 0), bool_flag("a", 1)],
        "segments": [{"key": "s"}, {"key": "s"}]}))
    .unwrap();
    assert!(ruleset.is_malformed("a"));
    let messages: Vec<String> = ruleset.problems().iter().map(ToString::to_string).collect();
    assert!(
        messages.contains(&"flag \"a\": key: duplicate flag key".to_owned()),
        "{messages:?}"
    );
    assert!(
        messages.contains(&"segment \"s\": key: duplicate segment key".to_owned()),
        "{messages:?}"
    );
}

/// `from_json` reads well-formed text through a typed fast path; it must load exactly
/// what `from_value` loads, and fail exactly where it fails.
#[test]
fn json_text_loads_like_its_value() {
    let flag = r#"{"key": "f", "kind": "bool", "variations": [true, false], "on": true,
        "rules": [{"id": "r", "serve": {"variation": 0}, "clauses": [
            {"op": "segment_match", "values": ["s"]}]}], "fallthrough": {"variation": 1}}"#;
    let segment = r#"{"key": "s", "included": [{"values": ["a"]}]}"#;
    let texts = [
        "{}".to_owned(),
        " \n{\"version\": null, \"flags\": null, \"segments\": null}".to_owned(),
        format!(r#"{{"version": 7, "flags": [{flag}], "segments": [{segment}]}}"#),
        format!(r#"{{"flags": [{flag}, {flag}], "extra": {{"x": [1]}}}}"#),
        format!(r#"{{"flags": [{flag}], "segments": [{segment}, {{"key": 5}}]}}"#),
        format!(r#"{{"flags": [{flag}, {{"key": "g", "on": "yes"}}, 5], "segments": [{segment}]}}"#),
        format!(r#"{{"version": 1, "version": 2, "flags": [{flag}]}}"#),
        r#"{"flags": [{"key": "f", "key": "g", "kind": "bool", "variations": [true], "fallthrough": {"variation": 0}}]}"#.to_owned(),
        r#"{"flags": [["f", "bool", [true], true, null, [], [], {"variation": 0}]]}"#.to_owned(),
        r#"[7, [], []]"#.to_owned(),
        r#"{"version": -1}"#.to_owned(),
        r#"{"version": 1.0}"#.to_owned(),
        r#"{"flags": {}}"#.to_owned(),
        r#"{"flags": []} x"#.to_owned(),
    ];
    for text in &texts {
        let from_value = serde_json::from_str::<serde_json::Value>(text)
            .map_err(vexil_engine::LoadError::from)
            .and_then(|v| Ruleset::from_value(&v))
            .map_err(|e| e.to_string());
        let from_json = Ruleset::from_json(text).map_err(|e| e.to_string());
        match (from_value, from_json) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a.to_value(), b.to_value(), "{text}");
                assert_eq!(a.problems(), b.problems(), "{text}");
                assert_eq!(a.version(), b.version(), "{text}");
            }
            (Err(a), Err(b)) => assert_eq!(a, b, "{text}"),
            (a, b) => panic!("{text}: {:?} vs {:?}", a.is_ok(), b.is_ok()),
        }
    }
}

/// Chains longer than the evaluation depth limit (64) end in `MALFORMED_FLAG`, reported on
/// the flag evaluated (with its version), whether the chain is of prerequisites or of
/// nested segments; shorter chains evaluate normally.
#[test]
fn chains_deeper_than_the_limit_are_malformed() {
    let count = 80;
    let flags: Vec<Value> = (0..count)
        .map(|i| {
            let mut flag = json!({"key": format!("c{i}"), "kind": "bool", "variations": [true, false],
                "on": true, "off_variation": 1, "fallthrough": {"variation": 0}, "version": i + 1});
            if i + 1 < count {
                flag["prerequisites"] = json!([{"key": format!("c{}", i + 1), "variation": 0}]);
            }
            flag
        })
        .chain(std::iter::once(json!({"key": "seg", "kind": "bool", "variations": [true, false],
            "on": true, "version": 7, "fallthrough": {"variation": 1},
            "rules": [{"id": "r", "serve": {"variation": 0},
                "clauses": [{"op": "segment_match", "values": ["s0"]}]}]})))
        .collect();
    let segments: Vec<Value> = (0..count)
        .map(|i| {
            if i + 1 < count {
                json!({"key": format!("s{i}"), "rules": [{"id": "r", "clauses": [
                    {"op": "segment_match", "values": [format!("s{}", i + 1)]}]}]})
            } else {
                json!({"key": format!("s{i}"), "included": [{"values": ["alice"]}]})
            }
        })
        .collect();
    let ruleset = Ruleset::from_value(&json!({"flags": flags, "segments": segments})).unwrap();
    assert!(ruleset.problems().is_empty(), "{:?}", ruleset.problems());
    let user = alice();
    for i in 0..count {
        let evaluation = ruleset.evaluate(&format!("c{i}"), &user, ValueKind::Bool);
        // c{i} follows count - 1 - i prerequisite links.
        if count - 1 - i > 64 {
            assert_eq!(
                evaluation.reason,
                Reason::Error {
                    error_kind: ErrorKind::MalformedFlag
                },
                "c{i}"
            );
            assert_eq!(evaluation.flag_version, i as u64 + 1, "c{i}");
            assert_eq!(evaluation.value, None, "c{i}");
        } else {
            assert_eq!(evaluation.reason, Reason::Fallthrough, "c{i}");
            assert_eq!(evaluation.value, Some(&json!(true)), "c{i}");
        }
    }
    let evaluation = ruleset.evaluate("seg", &user, ValueKind::Bool);
    assert_eq!(
        evaluation.reason,
        Reason::Error {
            error_kind: ErrorKind::MalformedFlag
        }
    );
    assert_eq!(evaluation.flag_version, 7);
    let all = ruleset.evaluate_all(&user);
    assert_eq!(all.len(), count + 1);
    for (key, evaluation) in &all {
        assert_eq!(
            *evaluation,
            ruleset.evaluate(key, &user, ValueKind::Json),
            "{key}"
        );
    }
}

#[test]
fn outcomes_are_numbered_over_the_flags_in_key_order() {
    let three = json!({"key": "b", "kind": "string", "variations": ["x", "y", "z"], "on": false,
        "fallthrough": {"variation": 0}});
    let unfit = json!({"key": "c", "kind": "bool", "variations": "not a list"});
    let base = Ruleset::from_value(&json!({"flags": [three, bool_flag("a", 0), unfit]})).unwrap();
    // "a": no variation and two variations; "b": no variation and three; "c": none.
    assert_eq!(base.flag_outcomes(0), 0..3);
    assert_eq!(base.flag_outcomes(1), 3..7);
    assert_eq!(base.flag_outcomes(2), 7..7);
    assert_eq!(base.flag_outcomes(3), 0..0, "no such flag");
    assert_eq!(base.outcome_count(), 7);
    // An off flag without an off variation serves outcome "no variation".
    let b = base.flag_index("b").unwrap();
    assert_eq!(
        base.serve_at(b, &alice(), ValueKind::String)
            .ordinary_outcome(),
        Some(3)
    );
    let a = base.flag_index("a").unwrap();
    assert_eq!(
        base.serve_at(a, &alice(), ValueKind::Bool)
            .ordinary_outcome(),
        Some(1)
    );
    // Errors are not ordinary.
    assert_eq!(
        base.serve_at(a, &alice(), ValueKind::String)
            .ordinary_outcome(),
        None
    );
    assert_eq!(
        base.serve_at(2, &alice(), ValueKind::Bool)
            .ordinary_outcome(),
        None
    );
    // A patch numbers its own flags again: reused flags move with the ones before them.
    let patched = base.patched(&Patch {
        version: 2,
        upsert_flags: vec![bool_flag("0", 1)],
        ..Patch::default()
    });
    assert_eq!(patched.flag_outcomes(0), 0..3);
    assert_eq!(patched.flag_outcomes(1), 3..6);
    assert_eq!(patched.outcome_count(), 10);
    assert_eq!(
        patched
            .serve_at(patched.flag_index("a").unwrap(), &alice(), ValueKind::Bool)
            .ordinary_outcome(),
        Some(4)
    );
}

/// Found by fuzzing: malformed flags written without a key are named after their position
/// (`flags[N]`); sorted as text, the tenth came before the ninth, so that saving and loading
/// the ruleset swapped their names and its JSON never settled.
#[test]
fn a_ruleset_with_keyless_flags_saves_and_loads_to_the_same_json() {
    let mut flags: Vec<Value> = (0..12)
        .map(|i| json!({"kind": "bool", "variations": [true, false], "note": i}))
        .collect();
    flags.insert(5, bool_flag("m-real", 0));
    flags.push(bool_flag("a-real", 1));
    let loaded = Ruleset::from_value(&json!({"flags": flags, "segments": []})).unwrap();
    let saved = loaded.to_value();
    let notes: Vec<&Value> = saved["flags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|flag| flag.get("note"))
        .collect();
    assert_eq!(
        notes,
        (0..12)
            .map(Value::from)
            .collect::<Vec<_>>()
            .iter()
            .collect::<Vec<_>>()
    );
    let again = Ruleset::from_value(&saved).unwrap();
    assert_eq!(again.to_value(), saved);
    // Both real flags still answer.
    let detail = again.evaluate("a-real", &alice(), ValueKind::Bool);
    assert!(detail.value.is_some());
}
