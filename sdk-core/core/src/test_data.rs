//! An in-memory source of flag data for an application's tests: no server, no file.
//!
//! A test builds a [`TestData`], creates clients on it ([`Config::with_test_data`]) and changes
//! flags one at a time ([`TestData::update_flag`], [`TestData::set_value`],
//! [`TestData::remove_flag`], segments likewise). Each change compiles the whole ruleset as the
//! server would, is refused with the field at fault when a flag or segment does not compile,
//! and otherwise reaches every client at once: the next variation call sees it, and the
//! client's change listeners are told on the client's own thread, as for a change from the
//! server. The clients evaluate locally (whatever their key's kind), report `READY` and serve
//! with source `NETWORK`, and send nothing anywhere.
//!
//! [`Config::with_test_data`]: crate::Config::with_test_data

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};

use serde_json::{Value, json};
use vexil_engine::{ResourceKind, Ruleset};

use crate::data::{Data, Source};
use crate::error::{ErrorCode, Failure};
use crate::inner::{Inner, lock};

/// Flags and segments held in memory, shared by the clients created on it. Cheap to clone
/// (clones share the data).
#[derive(Clone, Default)]
pub struct TestData {
    shared: Arc<Mutex<Held>>,
}

impl std::fmt::Debug for TestData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = lock(&self.shared);
        f.debug_struct("TestData")
            .field("flags", &held.flags.len())
            .field("segments", &held.segments.len())
            .field("version", &held.version)
            .finish()
    }
}

#[derive(Default)]
struct Held {
    flags: BTreeMap<String, Value>,
    segments: BTreeMap<String, Value>,
    version: i64,
    /// The clients created on this data, with their runtime (where listeners are told).
    clients: Vec<(Weak<Inner>, tokio::runtime::Handle)>,
}

impl Held {
    /// The flags and segments held, compiled as version `version`.
    fn ruleset(&self, version: i64) -> Ruleset {
        let value = json!({
            "version": version,
            "flags": self.flags.values().collect::<Vec<_>>(),
            "segments": self.segments.values().collect::<Vec<_>>(),
        });
        // The value is an object with a version: only its flags and segments can be at fault,
        // and those problems are recorded in the ruleset.
        Ruleset::from_value(&value).unwrap_or_default()
    }

    fn data(&self) -> Data {
        data_of(self.ruleset(self.version), self.version)
    }
}

/// `ruleset` at `version` as a client's data: current, as if from the server.
fn data_of(ruleset: Ruleset, version: i64) -> Data {
    Data::Ruleset {
        ruleset,
        version,
        source: Source::Network,
        received_at: crate::data::now_millis(),
        counters: Default::default(),
    }
}

/// The key of a flag or segment JSON, or a failure naming `what`.
fn key_of(value: &Value, what: &str) -> Result<String, Failure> {
    match value.get("key") {
        Some(Value::String(key)) if !key.is_empty() => Ok(key.clone()),
        _ => Err(Failure::invalid_argument(
            &format!("{what}.key"),
            "expected a non-empty string",
        )),
    }
}

impl TestData {
    pub fn new() -> TestData {
        TestData::default()
    }

    /// Adds or replaces a flag, given as JSON in the export format (`{"key", "kind",
    /// "variations", "on", "rules", "fallthrough", …}`). Refused, changing nothing, when it
    /// does not compile: the failure names the field.
    pub fn update_flag(&self, flag: Value) -> Result<(), Failure> {
        let key = key_of(&flag, "flag")?;
        self.change(ResourceKind::Flag, &key, |held| {
            held.flags.insert(key.clone(), flag)
        })
    }

    /// Makes flag `key` serve `value` to every context: a flag of the value's kind (bool,
    /// string, number, or JSON for anything else) with that one variation, on.
    pub fn set_value(&self, key: &str, value: Value) -> Result<(), Failure> {
        let kind = match &value {
            Value::Bool(_) => "bool",
            Value::String(_) => "string",
            Value::Number(_) => "number",
            _ => "json",
        };
        self.update_flag(json!({
            "key": key,
            "kind": kind,
            "variations": [value],
            "on": true,
            "off_variation": 0,
            "fallthrough": {"variation": 0},
        }))
    }

    /// Removes flag `key`; whether it was there.
    pub fn remove_flag(&self, key: &str) -> bool {
        self.remove(ResourceKind::Flag, key, |held| &mut held.flags)
    }

    /// Adds or replaces a segment, given as JSON in the export format. Refused, changing
    /// nothing, when it does not compile.
    pub fn update_segment(&self, segment: Value) -> Result<(), Failure> {
        let key = key_of(&segment, "segment")?;
        self.change(ResourceKind::Segment, &key, |held| {
            held.segments.insert(key.clone(), segment)
        })
    }

    /// Removes segment `key`; whether it was there.
    pub fn remove_segment(&self, key: &str) -> bool {
        self.remove(ResourceKind::Segment, key, |held| &mut held.segments)
    }

    /// The keys of the flags held, in order.
    pub fn flag_keys(&self) -> Vec<String> {
        lock(&self.shared).flags.keys().cloned().collect()
    }

    /// Applies `edit` (which returns what it replaced), checks that resource `key` of `kind`
    /// compiles, and hands the new data to every client; undoes the edit on a problem.
    /// Removes `key` from the map `held` picks; whether it was there.
    fn remove(
        &self,
        kind: ResourceKind,
        key: &str,
        map: impl FnOnce(&mut Held) -> &mut BTreeMap<String, Value>,
    ) -> bool {
        let mut removed = false;
        let _ = self.change(kind, key, |held| {
            let old = map(held).remove(key);
            removed = old.is_some();
            old
        });
        removed
    }

    fn change(
        &self,
        kind: ResourceKind,
        key: &str,
        edit: impl FnOnce(&mut Held) -> Option<Value>,
    ) -> Result<(), Failure> {
        let mut held = lock(&self.shared);
        let previous = edit(&mut held);
        // Compiled once, as the next version: checked, then handed to every client.
        let ruleset = held.ruleset(held.version + 1);
        if let Some(problem) = ruleset
            .problems()
            .iter()
            .find(|p| p.resource == kind && p.key == key)
        {
            let message = if problem.path.is_empty() {
                problem.message.clone()
            } else {
                format!("{}: {}", problem.path, problem.message)
            };
            let map = match kind {
                ResourceKind::Flag => &mut held.flags,
                ResourceKind::Segment => &mut held.segments,
            };
            match previous {
                Some(previous) => map.insert(key.to_owned(), previous),
                None => map.remove(key),
            };
            return Err(Failure::new(
                ErrorCode::InvalidArgument,
                format!("{} {key:?}: {message}", kind.as_str()),
            ));
        }
        held.version += 1;
        let version = held.version;
        held.clients.retain(|(client, _)| client.strong_count() > 0);
        // Every client is updated before the lock is released: the data's versions reach
        // each one in order.
        for (client, runtime) in &held.clients {
            if let Some(client) = client.upgrade() {
                client.replace_data_on(data_of(ruleset.clone(), version), runtime);
            }
        }
        Ok(())
    }

    /// Registers a new client for later changes, catching it up with one made since it
    /// took [`TestData::current`].
    pub(crate) fn attach(&self, client: &Arc<Inner>, runtime: tokio::runtime::Handle) {
        let mut held = lock(&self.shared);
        if client.data.load().version() != held.version {
            client.replace_data_on(held.data(), &runtime);
        }
        held.clients.push((Arc::downgrade(client), runtime));
    }

    /// The data held now, for a client being created.
    pub(crate) fn current(&self) -> Data {
        lock(&self.shared).data()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::{Client, Config, Context, SingleContext, Status, ValueKind};

    fn user(key: &str) -> Context {
        Context::from(SingleContext::new("user", key).unwrap())
    }

    fn client(test_data: &TestData) -> Client {
        Client::new(Config::new("vxl-server-test").with_test_data(test_data)).unwrap()
    }

    #[test]
    fn changes_reach_clients_at_once_and_their_listeners_on_the_client_thread() {
        let test_data = TestData::new();
        test_data.set_value("checkout", json!(true)).unwrap();
        let client = client(&test_data);
        assert_eq!(client.status(), Status::Ready);
        assert!(client.bool_variation("checkout", &user("alice"), false));
        let detail =
            client.variation_detail("checkout", &user("alice"), ValueKind::Bool, &json!(false));
        assert_eq!(detail.source, Source::Network);

        let (sent, changes) = mpsc::channel();
        let caller = std::thread::current().id();
        client.on_change(move |change| {
            let _ = sent.send((change.flag_keys.clone(), std::thread::current().id()));
        });
        test_data.set_value("checkout", json!(false)).unwrap();
        assert!(
            !client.bool_variation("checkout", &user("alice"), true),
            "seen at once"
        );
        let (keys, thread) = changes.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(keys, vec!["checkout".to_owned()]);
        assert_ne!(thread, caller);

        // Rules, as the server's flags have them.
        test_data
            .update_flag(json!({
                "key": "banner", "kind": "string", "variations": ["plain", "gold"], "on": true,
                "rules": [{"id": "bob", "clauses": [{"attribute": "key", "op": "in",
                    "values": ["bob"]}], "serve": {"variation": 1}}],
                "fallthrough": {"variation": 0},
            }))
            .unwrap();
        assert_eq!(client.string_variation("banner", &user("bob"), "?"), "gold");
        assert_eq!(
            client.string_variation("banner", &user("alice"), "?"),
            "plain"
        );
        let (keys, _) = changes.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(keys, vec!["banner".to_owned()]);

        assert!(test_data.remove_flag("banner"));
        assert!(!test_data.remove_flag("banner"));
        assert_eq!(client.string_variation("banner", &user("bob"), "?"), "?");
        assert_eq!(test_data.flag_keys(), vec!["checkout".to_owned()]);
        client.close();
    }

    #[test]
    fn a_flag_that_does_not_compile_is_refused_naming_the_field_and_changes_nothing() {
        let test_data = TestData::new();
        test_data.set_value("limit", json!(3)).unwrap();
        let client = client(&test_data);
        let failure = test_data
            .update_flag(json!({"key": "limit", "kind": "number", "variations": [1],
                "on": true, "fallthrough": {"variation": 4}}))
            .unwrap_err();
        assert_eq!(failure.code, ErrorCode::InvalidArgument);
        assert!(
            failure.message.contains("fallthrough"),
            "{}",
            failure.message
        );
        assert_eq!(client.number_variation("limit", &user("a"), 0.0), 3.0);
        let failure = test_data.update_flag(json!({"kind": "bool"})).unwrap_err();
        assert_eq!(failure.message, "flag.key: expected a non-empty string");
    }

    #[test]
    fn segments_and_clients_created_later_see_the_current_data() {
        let test_data = TestData::new();
        test_data
            .update_segment(json!({"key": "staff",
                "included": [{"context_kind": "user", "values": ["carol"]}]}))
            .unwrap();
        test_data
            .update_flag(json!({
                "key": "beta", "kind": "bool", "variations": [false, true], "on": true,
                "rules": [{"id": "staff", "clauses": [{"op": "segment_match",
                    "values": ["staff"]}], "serve": {"variation": 1}}],
                "fallthrough": {"variation": 0},
            }))
            .unwrap();
        // Any key kind: the test's data is evaluated locally.
        let late = Client::new(Config::new("vxl-mobile-test").with_test_data(&test_data)).unwrap();
        assert!(late.bool_variation("beta", &user("carol"), false));
        assert!(!late.bool_variation("beta", &user("dave"), true));
        assert!(test_data.remove_segment("staff"));
        assert!(!test_data.remove_segment("staff"));
    }
}
