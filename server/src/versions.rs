//! Recorded versions of flags and segments as documents, and what differs between two of
//! them: what the history API shows and compares.

use serde_json::{Map, Value};

use crate::storage::{FlagVersion, SegmentVersion};

/// A flag's recorded configuration as the engine's model JSON: what SDKs were served.
pub fn flag_document(version: &FlagVersion) -> Value {
    // The model always serializes.
    serde_json::to_value(version.model()).unwrap_or(Value::Null)
}

/// A segment's recorded version as the engine's model JSON, with its name and description
/// (which SDKs are not served, but which a version changes as well).
pub fn segment_document(version: &SegmentVersion) -> Value {
    let mut document = serde_json::to_value(version.model()).unwrap_or(Value::Null);
    if let Value::Object(fields) = &mut document {
        fields.insert("name".into(), Value::String(version.segment.name.clone()));
        fields.insert(
            "description".into(),
            Value::String(version.segment.description.clone()),
        );
    }
    document
}

/// One place where two documents differ.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    /// A JSON pointer (RFC 6901) to the place.
    pub path: String,
    /// The value in the first document; `None` where the second added it.
    pub before: Option<Value>,
    /// The value in the second document; `None` where it removed it.
    pub after: Option<Value>,
}

/// Where `before` and `after` differ, by path (object keys in alphabetical order, list
/// elements by index), leaving out the top-level `version` (two versions
/// always differ there). Objects are compared key by key and arrays
/// element by element, so that a changed clause shows as that clause, not as a new rule
/// list; an element past the end of the shorter array is added or removed.
pub fn differences(before: &Value, after: &Value) -> Vec<Difference> {
    let mut found = Vec::new();
    match (before, after) {
        (Value::Object(a), Value::Object(b)) => {
            let mut a = a.clone();
            let mut b = b.clone();
            a.remove("version");
            b.remove("version");
            compare_objects(&a, &b, "", &mut found);
        }
        _ => compare(before, after, "", &mut found),
    }
    found
}

/// Compares what stands at `at` on each side: a difference when one side lacks it.
fn compare_entry(
    before: Option<&Value>,
    after: Option<&Value>,
    at: String,
    found: &mut Vec<Difference>,
) {
    match (before, after) {
        (Some(x), Some(y)) => compare(x, y, &at, found),
        (x, y) => found.push(Difference {
            path: at,
            before: x.cloned(),
            after: y.cloned(),
        }),
    }
}

fn compare(before: &Value, after: &Value, path: &str, found: &mut Vec<Difference>) {
    match (before, after) {
        (Value::Object(a), Value::Object(b)) => compare_objects(a, b, path, found),
        (Value::Array(a), Value::Array(b)) => {
            for i in 0..a.len().max(b.len()) {
                let at = format!("{path}/{i}");
                match (a.get(i), b.get(i)) {
                    (Some(x), Some(y)) => compare(x, y, &at, found),
                    (x, y) => found.push(Difference {
                        path: at,
                        before: x.cloned(),
                        after: y.cloned(),
                    }),
                }
            }
        }
        (a, b) if a == b => {}
        (a, b) => found.push(Difference {
            path: path.to_owned(),
            before: Some(a.clone()),
            after: Some(b.clone()),
        }),
    }
}

fn compare_objects(
    before: &Map<String, Value>,
    after: &Map<String, Value>,
    path: &str,
    found: &mut Vec<Difference>,
) {
    let keys: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for key in keys {
        let at = format!("{path}/{}", key.replace('~', "~0").replace('/', "~1"));
        compare_entry(before.get(key), after.get(key), at, found);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(found: &[Difference]) -> Vec<&str> {
        found.iter().map(|d| d.path.as_str()).collect()
    }

    #[test]
    fn the_version_alone_is_no_difference() {
        let a = json!({ "key": "f", "version": 3, "on": true });
        let b = json!({ "key": "f", "version": 9, "on": true });
        assert!(differences(&a, &b).is_empty());
    }

    #[test]
    fn nested_changes_are_reported_where_they_are() {
        let a = json!({
            "on": false,
            "rules": [{ "id": "r1", "clauses": [{ "attribute": "plan", "values": ["gold"] }] }],
            "salt": null
        });
        let b = json!({
            "on": true,
            "rules": [
                { "id": "r1", "clauses": [{ "attribute": "plan", "values": ["gold", "silver"] }] },
                { "id": "r2", "clauses": [] }
            ],
            "targets": []
        });
        let found = differences(&a, &b);
        assert_eq!(
            paths(&found),
            [
                "/on",
                "/rules/0/clauses/0/values/1",
                "/rules/1",
                "/salt",
                "/targets"
            ]
        );
        assert_eq!(found[0].before, Some(json!(false)));
        assert_eq!(found[0].after, Some(json!(true)));
        assert_eq!(found[1].before, None, "an added element has no before");
        assert_eq!(found[1].after, Some(json!("silver")));
        assert_eq!(found[3].after, None, "a removed field has no after");
        assert_eq!(found[4].before, None);
    }

    #[test]
    fn keys_are_escaped_as_json_pointers() {
        let found = differences(&json!({ "a/b~c": 1 }), &json!({ "a/b~c": 2 }));
        assert_eq!(paths(&found), ["/a~1b~0c"]);
    }

    #[test]
    fn a_changed_kind_of_value_is_one_difference() {
        let found = differences(&json!({ "x": [1, 2] }), &json!({ "x": { "y": 1 } }));
        assert_eq!(paths(&found), ["/x"]);
    }
}
