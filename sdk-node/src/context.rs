//! Contexts: plain objects in the canonical JSON shape (`{kind, key, attributes}` or
//! `{kind: "multi", contexts: [...]}`), read natively on every call, or a [`Context`] made
//! once and reused, which costs nothing to pass.

use napi::bindgen_prelude::Unknown;
use napi::{Env, JsValue, sys};
use napi_derive::napi;
use serde_json::Value;
use vexil_core::SingleContext;

use crate::error::{ErrorCode, Result, error, guard};
use crate::js::{Js, Type};

/// A context converted once into the engine's form: pass it to every call that takes a
/// context, instead of a plain object, to skip reading the object each time.
#[napi]
#[derive(Debug)]
pub struct Context {
    pub(crate) inner: vexil_core::Context,
}

#[napi]
impl Context {
    /// Validates and converts `context` (a single or multi-kind context object). Throws a
    /// `VEXIL_INVALID_CONTEXT` error naming what is wrong.
    #[napi(constructor, ts_args_type = "context: ContextObject")]
    pub fn new(env: Env, context: Unknown) -> Result<Self> {
        guard(|| {
            let js = Js { env: env.raw() };
            Ok(Context {
                inner: required_context(js, context.raw(), "context")?,
            })
        })
    }

    /// The context's kind, or `"multi"` for a multi-kind context.
    #[napi(getter)]
    pub fn kind(&self) -> String {
        if self.inner.is_multi() {
            "multi".to_owned()
        } else {
            self.inner
                .parts()
                .first()
                .map_or_else(String::new, |p| p.kind().to_owned())
        }
    }

    /// The key of a single context; `null` for a multi-kind context.
    #[napi(getter)]
    pub fn key(&self) -> Option<String> {
        match self.inner.parts() {
            [single] => Some(single.key().to_owned()),
            _ => None,
        }
    }

    /// The canonical JSON form (what `JSON.stringify` prints).
    #[napi(js_name = "toJSON", ts_return_type = "ContextObject")]
    pub fn to_json(&self) -> Value {
        self.inner.to_json()
    }
}

/// A context argument as a call receives it: a [`Context`], a plain object read natively,
/// or the JSON of anything else (the core reads it once and answers an invalid one with the
/// default and its reason).
pub enum ContextArg<'a> {
    Native(&'a vexil_core::Context),
    Parsed(vexil_core::Context),
    /// Its JSON, or `null` when it cannot even be represented as JSON.
    Json(Value),
}

impl ContextArg<'_> {
    pub fn as_ref(&self) -> vexil_core::ContextRef<'_> {
        match self {
            ContextArg::Native(context) => vexil_core::ContextRef::Built(context),
            ContextArg::Parsed(context) => vexil_core::ContextRef::Built(context),
            ContextArg::Json(json) => vexil_core::ContextRef::Json(json),
        }
    }
}

/// Whether `value` is a [`Context`] made by this addon, and if so the context inside.
pub fn native_context<'a>(js: Js, value: sys::napi_value) -> Option<&'a vexil_core::Context> {
    let context = js.unwrap_class::<Context>(value)?;
    // SAFETY: the JavaScript object (an argument of the current call) keeps the `Context`
    // alive for the call, which is as long as the reference is used; a `Context` is never
    // changed after it is made.
    Some(unsafe { &context.as_ref().inner })
}

/// Reads a context argument: a [`Context`], a plain object, or anything else (invalid).
/// Never fails: an invalid context is evaluated to the default with its reason.
pub fn context_arg<'a>(js: Js, value: sys::napi_value) -> ContextArg<'a> {
    if js.type_of(value) != Type::Object {
        return ContextArg::Json(js.json(value).unwrap_or(Value::Null));
    }
    if let Some(context) = native_context(js, value) {
        return ContextArg::Native(context);
    }
    match read_context(js, value) {
        Some(context) => ContextArg::Parsed(context),
        None => ContextArg::Json(js.json(value).unwrap_or(Value::Null)),
    }
}

/// A context that must be valid (identify, track, options): the engine's context, or a
/// `VEXIL_INVALID_CONTEXT` error naming `field` and the problem.
pub fn required_context(
    js: Js,
    value: sys::napi_value,
    field: &str,
) -> Result<vexil_core::Context> {
    match context_arg(js, value) {
        ContextArg::Native(context) => Ok(context.clone()),
        ContextArg::Parsed(context) => Ok(context),
        ContextArg::Json(_) => {
            let json = js.json(value).map_err(|problem| {
                error(
                    ErrorCode::InvalidContext,
                    format!("{field}: not representable as JSON: {problem}"),
                )
            })?;
            vexil_core::context_from_json(&json, field).map_err(crate::error::from_core)
        }
    }
}

/// The fast reading of a plain context object, without building its JSON first. `None`
/// when anything is off: the caller then hands the JSON to the engine, which decides.
fn read_context(js: Js, object: sys::napi_value) -> Option<vexil_core::Context> {
    let kind = js.get(object, c"kind")?;
    let is_multi = js.type_of(kind) == Type::String && js.with_str(kind, |k| k == "multi")?;
    if !is_multi {
        return read_single(js, object, kind).map(vexil_core::Context::from);
    }
    let contexts = js.get(object, c"contexts")?;
    if !js.is_array(contexts) {
        return None;
    }
    let mut parts = Vec::new();
    for part in js.elements(contexts)? {
        if js.type_of(part) != Type::Object || js.is_array(part) {
            return None;
        }
        let kind = js.get(part, c"kind")?;
        if js.type_of(kind) == Type::String && js.with_str(kind, |k| k == "multi")? {
            return None;
        }
        parts.push(read_single(js, part, kind)?);
    }
    vexil_core::Context::multi(parts).ok()
}

fn read_single(js: Js, object: sys::napi_value, kind: sys::napi_value) -> Option<SingleContext> {
    let key = js.get(object, c"key")?;
    if js.type_of(key) != Type::String {
        return None;
    }
    let mut context = match js.type_of(kind) {
        Type::Undefined => js.with_str(key, |key| SingleContext::new("user", key))?,
        Type::String => js.with_str(kind, |kind| {
            js.with_str(key, |key| SingleContext::new(kind, key))
        })??,
        _ => return None,
    }
    .ok()?;
    let attributes = js.get(object, c"attributes")?;
    match js.type_of(attributes) {
        Type::Undefined | Type::Null => {}
        Type::Object if !js.is_array(attributes) => {
            for name in js.own_keys(attributes)? {
                let value = js.get_by(attributes, name)?;
                if js.type_of(value) == Type::Undefined {
                    continue;
                }
                let value = js.json(value).ok()?;
                js.with_str(name, |name| {
                    context.set(name, value);
                })?;
            }
        }
        _ => return None,
    }
    // Marks of private attributes are rare: the engine reads a context that has them.
    let marked = js.get(object, c"private_attributes")?;
    if !matches!(js.type_of(marked), Type::Undefined | Type::Null) {
        return None;
    }
    Some(context)
}
