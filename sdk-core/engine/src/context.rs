//! Evaluation contexts: one or several (multi-kind) kinds, each with a key and attributes.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::short_strings::{hash_key, short_eq};

/// Why a context is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContextError {
    #[error("context must be a JSON object")]
    NotAnObject,
    #[error(
        "context kind must be a string of 1 to 64 characters among A-Z a-z 0-9 . _ - (and not \"kind\"), got {0}"
    )]
    InvalidKind(String),
    #[error("context key must be a non-empty string")]
    InvalidKey,
    #[error("context attributes must be a JSON object")]
    AttributesNotAnObject,
    #[error("a multi-kind context needs a non-empty \"contexts\" array")]
    EmptyMulti,
    #[error("a multi-kind context cannot nest another multi-kind context")]
    NestedMulti,
    #[error("context kind {0:?} appears more than once in a multi-kind context")]
    DuplicateKind(String),
    #[error(
        "context private_attributes must be an array of attribute references (a name, or a JSON Pointer such as \"/address/street\"), got {0}"
    )]
    InvalidPrivateAttributes(String),
}

pub(crate) fn is_valid_kind(kind: &str) -> bool {
    !kind.is_empty()
        && kind.len() <= 64
        && kind != "kind"
        && kind
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// One kind of a context: `user`, `organization`, `device`…
#[derive(Debug, Clone, PartialEq)]
pub struct SingleContext {
    /// Stored as JSON strings so that attribute references to `key` and `kind` resolve to a
    /// `&Value` like every other attribute.
    kind: Value,
    /// The hash of `kind`, to find a kind by comparing one word (see [`Name`]).
    kind_hash: u64,
    key: Value,
    /// In insertion order. Contexts hold few attributes, and a scan that compares hashes
    /// first beats a tree search made of `memcmp` calls (measured: about 3x on lookups).
    attributes: Vec<(Name, Value)>,
    /// Attribute references the application marked private in this context: evaluation
    /// reads them, events carry their names but never their values (see [`Redaction`]).
    /// Empty for almost every context, and then without an allocation.
    private_attributes: Box<[Box<str>]>,
}

/// A context kind or attribute name with its hash, computed once: when the ruleset and the
/// context both carry the hash, finding a name costs one word comparison per candidate,
/// and the text is compared only to confirm a match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Name {
    hash: u64,
    text: Box<str>,
}

impl Name {
    pub(crate) fn new(text: &str) -> Name {
        Name {
            hash: hash_key(text.as_bytes()),
            text: text.into(),
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether both name the same text. Equal hashes of equal lengths up to 8 bytes are
    /// equal texts (see [`hash_key`]), so only longer names compare their bytes.
    #[inline]
    fn is(&self, other: &Name) -> bool {
        same_text(self.hash, &self.text, other.hash, &other.text)
    }
}

/// Whether two strings with the given [`hash_key`] hashes are equal.
#[inline(always)]
fn same_text(hash_a: u64, a: &str, hash_b: u64, b: &str) -> bool {
    hash_a == hash_b && a.len() == b.len() && (a.len() <= 8 || short_eq(a, b))
}

impl SingleContext {
    pub fn new(kind: &str, key: &str) -> Result<SingleContext, ContextError> {
        if !is_valid_kind(kind) || kind == "multi" {
            return Err(ContextError::InvalidKind(format!("{kind:?}")));
        }
        if key.is_empty() {
            return Err(ContextError::InvalidKey);
        }
        Ok(SingleContext {
            kind: Value::String(kind.to_owned()),
            kind_hash: hash_key(kind.as_bytes()),
            key: Value::String(key.to_owned()),
            attributes: Vec::new(),
            private_attributes: Box::default(),
        })
    }

    /// Marks an attribute private in this context: a name, or a JSON Pointer into the
    /// attributes (`/address/street`). A reference that is not one is refused.
    pub fn mark_private(&mut self, reference: &str) -> Result<&mut Self, ContextError> {
        if AttributeRef::parse(reference).is_none() {
            return Err(ContextError::InvalidPrivateAttributes(format!(
                "{reference:?}"
            )));
        }
        if !self.private_attributes.iter().any(|r| &**r == reference) {
            let mut marked = std::mem::take(&mut self.private_attributes).into_vec();
            marked.push(reference.into());
            self.private_attributes = marked.into_boxed_slice();
        }
        Ok(self)
    }

    /// The attribute references marked private in this context.
    pub fn private_attributes(&self) -> impl Iterator<Item = &str> {
        self.private_attributes.iter().map(|r| &**r)
    }

    /// Sets an attribute (replacing any previous value).
    pub fn set(&mut self, name: &str, value: Value) -> &mut Self {
        match self.attributes.iter_mut().find(|(n, _)| n.as_str() == name) {
            Some((_, slot)) => *slot = value,
            None => self.attributes.push((Name::new(name), value)),
        }
        self
    }

    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.set(name, value.into());
        self
    }

    pub fn kind(&self) -> &str {
        self.kind.as_str().unwrap_or_default()
    }

    pub fn key(&self) -> &str {
        self.key.as_str().unwrap_or_default()
    }

    /// The attributes, in the order they were set.
    pub fn attributes(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.attributes.iter().map(|(n, v)| (n.as_str(), v))
    }

    /// One attribute by name.
    #[inline]
    pub fn attribute(&self, name: &str) -> Option<&Value> {
        self.attributes
            .iter()
            .find(|(n, _)| short_eq(n.as_str(), name))
            .map(|(_, v)| v)
    }

    /// One attribute by name, found by hash.
    #[inline]
    pub(crate) fn attribute_named(&self, name: &Name) -> Option<&Value> {
        self.attributes
            .iter()
            .find(|(n, _)| n.is(name))
            .map(|(_, v)| v)
    }

    pub(crate) fn key_value(&self) -> &Value {
        &self.key
    }

    pub(crate) fn kind_value(&self) -> &Value {
        &self.kind
    }

    fn from_json_object(object: &Map<String, Value>) -> Result<SingleContext, ContextError> {
        let kind = match object.get("kind") {
            None => "user",
            Some(Value::String(kind)) => kind.as_str(),
            Some(other) => return Err(ContextError::InvalidKind(other.to_string())),
        };
        let key = match object.get("key") {
            Some(Value::String(key)) => key.as_str(),
            _ => return Err(ContextError::InvalidKey),
        };
        let mut context = SingleContext::new(kind, key)?;
        match object.get("attributes") {
            None | Some(Value::Null) => {}
            Some(Value::Object(attributes)) => {
                context.attributes = attributes
                    .iter()
                    .map(|(n, v)| (Name::new(n), v.clone()))
                    .collect();
            }
            Some(_) => return Err(ContextError::AttributesNotAnObject),
        }
        match object.get("private_attributes") {
            None | Some(Value::Null) => {}
            Some(Value::Array(references)) => {
                for reference in references {
                    let Some(reference) = reference.as_str() else {
                        return Err(ContextError::InvalidPrivateAttributes(
                            reference.to_string(),
                        ));
                    };
                    context.mark_private(reference)?;
                }
            }
            Some(other) => return Err(ContextError::InvalidPrivateAttributes(other.to_string())),
        }
        Ok(context)
    }

    fn to_json(&self) -> Value {
        let mut object = Map::new();
        object.insert("kind".into(), self.kind.clone());
        object.insert("key".into(), self.key.clone());
        if !self.attributes.is_empty() {
            let attributes: Map<String, Value> = self
                .attributes
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), v.clone()))
                .collect();
            object.insert("attributes".into(), Value::Object(attributes));
        }
        if !self.private_attributes.is_empty() {
            let marked = self.private_attributes().map(Value::from).collect();
            object.insert("private_attributes".into(), Value::Array(marked));
        }
        Value::Object(object)
    }

    /// The JSON of this context as events carry it: the attributes `redaction` and this
    /// context's own marks name are removed, and `redacted_attributes` lists the references
    /// of those that were present (names, never values). `key` and `kind` are never removed:
    /// events need them to count a context.
    fn to_redacted_json(&self, redaction: &Redaction) -> Value {
        let mut attributes: Map<String, Value> = self
            .attributes
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.clone()))
            .collect();
        let mut redacted: Vec<Value> = Vec::new();
        let mut note = |reference: &str| {
            if !redacted.iter().any(|r| r.as_str() == Some(reference)) {
                redacted.push(Value::from(reference));
            }
        };
        if redaction.all {
            for (name, _) in std::mem::take(&mut attributes) {
                note(&name);
            }
        }
        let marked = self.private_attributes.iter().map(|r| &**r);
        for reference in redaction.references.iter().map(|r| &**r).chain(marked) {
            if remove_referenced(&mut attributes, reference) {
                note(reference);
            }
        }
        let mut object = Map::new();
        object.insert("kind".into(), self.kind.clone());
        object.insert("key".into(), self.key.clone());
        if !attributes.is_empty() {
            object.insert("attributes".into(), Value::Object(attributes));
        }
        if !redacted.is_empty() {
            object.insert("redacted_attributes".into(), Value::Array(redacted));
        }
        Value::Object(object)
    }
}

/// Removes the value `reference` names from `attributes`; whether there was one. A pointer
/// walks objects only: an array element is not removed (that would renumber the others),
/// nor anything under one.
fn remove_referenced(attributes: &mut Map<String, Value>, reference: &str) -> bool {
    match AttributeRef::parse(reference) {
        Some(AttributeRef::Name(name)) => attributes.remove(name.as_str()).is_some(),
        Some(AttributeRef::Pointer(tokens)) => {
            let Some((last, parents)) = tokens.split_last() else {
                return false;
            };
            let mut object = attributes;
            for token in parents {
                match object.get_mut(&**token) {
                    Some(Value::Object(inner)) => object = inner,
                    _ => return false,
                }
            }
            object.remove(&**last).is_some()
        }
        Some(AttributeRef::Key | AttributeRef::Kind) | None => false,
    }
}

/// Which attributes of a context events leave out (an SDK's private-attribute settings):
/// every attribute, or those named by attribute references, on every kind of a context.
/// A context's own marks (`private_attributes` in its JSON) are removed as well.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Redaction {
    all: bool,
    references: Box<[Box<str>]>,
}

impl Redaction {
    /// Every attribute private when `all`; otherwise those `references` name. A reference
    /// that is not one (empty, or a pointer with `~` not followed by 0 or 1) is refused with
    /// its position.
    pub fn new<S: AsRef<str>>(all: bool, references: &[S]) -> Result<Redaction, (usize, String)> {
        for (i, reference) in references.iter().enumerate() {
            let reference = reference.as_ref();
            if AttributeRef::parse(reference).is_none() {
                return Err((
                    i,
                    format!(
                        "{reference:?} is not an attribute reference (a name, or a JSON Pointer such as \"/address/street\")"
                    ),
                ));
            }
        }
        Ok(Redaction {
            all,
            references: references.iter().map(|r| r.as_ref().into()).collect(),
        })
    }

    /// Whether nothing is removed unless a context marks it.
    pub fn is_empty(&self) -> bool {
        !self.all && self.references.is_empty()
    }
}

/// What a flag is evaluated for: a single context or several kinds at once.
///
/// Immutable once built, and shared: a clone (an SDK queueing an event for it) is a
/// reference-count increment, not a copy of every attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct Context {
    parts: Arc<[SingleContext]>,
}

impl From<SingleContext> for Context {
    fn from(single: SingleContext) -> Context {
        Context {
            parts: Arc::new([single]),
        }
    }
}

impl Context {
    /// A `user` context with the given key.
    pub fn user(key: &str) -> Result<Context, ContextError> {
        SingleContext::new("user", key).map(Context::from)
    }

    /// A multi-kind context. Kinds must be distinct.
    pub fn multi(parts: Vec<SingleContext>) -> Result<Context, ContextError> {
        if parts.is_empty() {
            return Err(ContextError::EmptyMulti);
        }
        for (i, part) in parts.iter().enumerate() {
            if parts[..i].iter().any(|p| p.kind == part.kind) {
                return Err(ContextError::DuplicateKind(part.kind().to_owned()));
            }
        }
        Ok(Context {
            parts: parts.into(),
        })
    }

    /// Reads the canonical JSON form (see `conformance/SCHEMA.md`).
    pub fn from_json(value: &Value) -> Result<Context, ContextError> {
        let object = value.as_object().ok_or(ContextError::NotAnObject)?;
        if object.get("kind").and_then(Value::as_str) != Some("multi") {
            return SingleContext::from_json_object(object).map(Context::from);
        }
        let parts = match object.get("contexts") {
            Some(Value::Array(parts)) if !parts.is_empty() => parts,
            _ => return Err(ContextError::EmptyMulti),
        };
        let mut singles = Vec::with_capacity(parts.len());
        for part in parts {
            let part = part.as_object().ok_or(ContextError::NotAnObject)?;
            if part.get("kind").and_then(Value::as_str) == Some("multi") {
                return Err(ContextError::NestedMulti);
            }
            singles.push(SingleContext::from_json_object(part)?);
        }
        Context::multi(singles)
    }

    pub fn to_json(&self) -> Value {
        match &*self.parts {
            [single] => single.to_json(),
            parts => serde_json::json!({
                "kind": "multi",
                "contexts": parts.iter().map(SingleContext::to_json).collect::<Vec<_>>(),
            }),
        }
    }

    /// The JSON events carry for this context: attributes that `redaction` or the context's
    /// own marks make private are removed, and each kind lists the references it lost in
    /// `redacted_attributes`.
    pub fn to_redacted_json(&self, redaction: &Redaction) -> Value {
        match &*self.parts {
            [single] => single.to_redacted_json(redaction),
            parts => serde_json::json!({
                "kind": "multi",
                "contexts": parts
                    .iter()
                    .map(|part| part.to_redacted_json(redaction))
                    .collect::<Vec<_>>(),
            }),
        }
    }

    /// The context of the given kind, if this context has it.
    #[inline]
    pub fn get(&self, kind: &str) -> Option<&SingleContext> {
        self.parts.iter().find(|p| short_eq(p.kind(), kind))
    }

    /// The context of the given kind, found by hash.
    #[inline]
    pub(crate) fn get_kind(&self, kind: &Name) -> Option<&SingleContext> {
        self.parts
            .iter()
            .find(|p| same_text(p.kind_hash, p.kind(), kind.hash, kind.as_str()))
    }

    pub fn parts(&self) -> &[SingleContext] {
        &self.parts
    }

    pub fn is_multi(&self) -> bool {
        self.parts.len() > 1
    }
}

/// A parsed attribute reference (see "Attribute references" in `conformance/SCHEMA.md`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AttributeRef {
    Key,
    Kind,
    /// A top-level attribute, named literally.
    Name(Name),
    /// A JSON Pointer into the attributes, already unescaped, split into tokens.
    Pointer(Box<[Box<str>]>),
}

impl AttributeRef {
    /// Parses a reference; `None` for a malformed pointer (`/` alone, `~` not followed by 0 or 1).
    pub(crate) fn parse(reference: &str) -> Option<AttributeRef> {
        if reference.is_empty() {
            return None;
        }
        let Some(pointer) = reference.strip_prefix('/') else {
            return Some(match reference {
                "key" => AttributeRef::Key,
                "kind" => AttributeRef::Kind,
                name => AttributeRef::Name(Name::new(name)),
            });
        };
        let mut tokens = Vec::new();
        for raw in pointer.split('/') {
            tokens.push(unescape_pointer_token(raw)?.into_boxed_str());
        }
        if tokens.len() == 1 {
            match &*tokens[0] {
                "key" => return Some(AttributeRef::Key),
                "kind" => return Some(AttributeRef::Kind),
                _ => {}
            }
        }
        Some(AttributeRef::Pointer(tokens.into_boxed_slice()))
    }

    /// The referenced value, `None` when absent or `null`.
    #[inline]
    pub(crate) fn resolve<'c>(&self, context: &'c SingleContext) -> Option<&'c Value> {
        let found = match self {
            AttributeRef::Key => Some(context.key_value()),
            AttributeRef::Kind => Some(context.kind_value()),
            AttributeRef::Name(name) => context.attribute_named(name),
            AttributeRef::Pointer(tokens) => {
                let mut current = context.attribute(&tokens[0]);
                for token in &tokens[1..] {
                    current = match current? {
                        Value::Object(map) => map.get(&**token),
                        Value::Array(items) => parse_index(token).and_then(|i| items.get(i)),
                        _ => None,
                    };
                }
                current
            }
        };
        found.filter(|v| !v.is_null())
    }
}

fn parse_index(token: &str) -> Option<usize> {
    if token.is_empty() || (token.len() > 1 && token.starts_with('0')) {
        return None;
    }
    if !token.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    token.parse().ok()
}

fn unescape_pointer_token(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_single_and_multi() {
        let single = Context::from_json(&json!({"key": "alice", "attributes": {"a": 1}})).unwrap();
        assert_eq!(single.get("user").unwrap().key(), "alice");
        let multi = Context::from_json(&json!({"kind": "multi", "contexts": [
            {"kind": "user", "key": "alice"}, {"kind": "org", "key": "acme"}]}))
        .unwrap();
        assert_eq!(multi.get("org").unwrap().key(), "acme");
        assert_eq!(Context::from_json(&multi.to_json()).unwrap(), multi);
    }

    #[test]
    fn rejects_invalid() {
        let cases = [
            json!("alice"),
            json!({"key": ""}),
            json!({"key": 5}),
            json!({"kind": "kind", "key": "a"}),
            json!({"kind": "multi", "key": "a"}),
            json!({"kind": "bad kind", "key": "a"}),
            json!({"key": "a", "attributes": [1]}),
            json!({"kind": "multi", "contexts": []}),
            json!({"kind": "multi", "contexts": [{"key": "a"}, {"key": "b"}]}),
        ];
        for case in cases {
            assert!(Context::from_json(&case).is_err(), "{case}");
        }
    }

    #[test]
    fn private_marks_read_and_write_back() {
        let json = json!({"kind": "user", "key": "k", "attributes": {"email": "e"},
            "private_attributes": ["email", "/address/street"]});
        let context = Context::from_json(&json).unwrap();
        let marked: Vec<&str> = context.parts()[0].private_attributes().collect();
        assert_eq!(marked, ["email", "/address/street"]);
        assert_eq!(context.to_json(), json);
        for bad in [json!("email"), json!([1]), json!([""]), json!(["/a~2"])] {
            let err = Context::from_json(&json!({"key": "k", "private_attributes": bad}));
            assert!(
                matches!(err, Err(ContextError::InvalidPrivateAttributes(_))),
                "{err:?}"
            );
        }
    }

    #[test]
    fn redaction_removes_values_and_lists_names() {
        let context = Context::from_json(&json!({"kind": "multi", "contexts": [
            {"kind": "user", "key": "u", "private_attributes": ["name", "/tags/0"],
             "attributes": {"email": "e@x", "name": "N", "address": {"street": "s", "city": "c"},
                            "tags": ["t"], "plan": "pro"}},
            {"kind": "org", "key": "o", "attributes": {"email": "billing@x"}}]}))
        .unwrap();
        let redaction =
            Redaction::new(false, &["email", "/address/street", "key", "/missing/x"]).unwrap();
        assert_eq!(
            context.to_redacted_json(&redaction),
            json!({"kind": "multi", "contexts": [
                {"kind": "user", "key": "u",
                 "attributes": {"address": {"city": "c"}, "tags": ["t"], "plan": "pro"},
                 "redacted_attributes": ["email", "/address/street", "name"]},
                {"kind": "org", "key": "o", "redacted_attributes": ["email"]}]})
        );
        let all = Redaction::new(true, &["plan"]).unwrap();
        let user =
            Context::from_json(&json!({"key": "u", "attributes": {"a": 1, "plan": 2}})).unwrap();
        assert_eq!(
            user.to_redacted_json(&all),
            json!({"kind": "user", "key": "u", "redacted_attributes": ["a", "plan"]})
        );
        // Nothing private: the events' form is the context's own, without marks.
        assert_eq!(user.to_redacted_json(&Redaction::default()), user.to_json());
        assert_eq!(Redaction::new(false, &["ok", ""]).unwrap_err().0, 1);
    }

    #[test]
    fn resolves_references() {
        let context = Context::from_json(&json!({"kind": "user", "key": "k", "attributes": {
            "a/b": 1, "m~n": 2, "nested": {"city": "Paris"}, "list": [10, 20], "nil": null}}))
        .unwrap();
        let user = context.get("user").unwrap();
        let get = |r: &str| AttributeRef::parse(r).unwrap().resolve(user).cloned();
        assert_eq!(get("key"), Some(json!("k")));
        assert_eq!(get("/kind"), Some(json!("user")));
        assert_eq!(get("a/b"), Some(json!(1)));
        assert_eq!(get("/a~1b"), Some(json!(1)));
        assert_eq!(get("/m~0n"), Some(json!(2)));
        assert_eq!(get("/nested/city"), Some(json!("Paris")));
        assert_eq!(get("/list/1"), Some(json!(20)));
        assert_eq!(get("/list/01"), None);
        assert_eq!(get("/nil"), None);
        assert!(AttributeRef::parse("/bad~2").is_none());
        assert_eq!(
            AttributeRef::parse("/"),
            Some(AttributeRef::Pointer(vec!["".into()].into_boxed_slice()))
        );
        assert!(AttributeRef::parse("").is_none());
    }
}
