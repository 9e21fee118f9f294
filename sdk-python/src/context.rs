//! Evaluation contexts: the reusable `vexil.Context` (converted once, held natively) and
//! plain dicts of the canonical JSON shape, converted on each call.

use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};
use std::borrow::Cow;

use serde_json::Value;
use vexil_core::{Context as EngineContext, ContextRef, SingleContext};

use crate::convert::{to_json, to_python, type_name};
use crate::{InvalidContextError, to_py};

/// An evaluation context built once and reused: a single kind (`Context("alice",
/// kind="user", attributes={...})`) or several (`Context.multi(user, org)`). Immutable, so
/// it can be shared between threads.
#[pyclass(frozen, module = "vexil", name = "Context")]
#[derive(Debug)]
pub struct Context {
    pub(crate) inner: EngineContext,
}

#[pymethods]
impl Context {
    #[new]
    #[pyo3(signature = (key, *, kind = "user", attributes = None, private_attributes = None))]
    fn new(
        key: &str,
        kind: &str,
        attributes: Option<&Bound<'_, PyAny>>,
        private_attributes: Option<Vec<String>>,
    ) -> PyResult<Context> {
        crate::guard(|| {
            let mut single = SingleContext::new(kind, key)
                .map_err(|err| InvalidContextError::new_err(err.to_string()))?;
            for reference in private_attributes.iter().flatten() {
                single
                    .mark_private(reference)
                    .map_err(|err| InvalidContextError::new_err(err.to_string()))?;
            }
            if let Some(attributes) = attributes.filter(|a| !a.is_none()) {
                let Ok(attributes) = attributes.cast::<PyDict>() else {
                    return Err(PyTypeError::new_err(format!(
                        "attributes: expected a dict, got {}",
                        type_name(attributes)
                    )));
                };
                set_attributes(&mut single, attributes).map_err(|e| e.into_err("attributes"))?;
            }
            Ok(Context {
                inner: EngineContext::from(single),
            })
        })
    }

    /// A multi-kind context from single-kind contexts of distinct kinds.
    #[staticmethod]
    #[pyo3(signature = (*contexts))]
    fn multi(contexts: &Bound<'_, PyTuple>) -> PyResult<Context> {
        crate::guard(|| {
            let mut parts = Vec::with_capacity(contexts.len());
            for (i, part) in contexts.iter().enumerate() {
                let Ok(part) = part.cast::<Context>() else {
                    return Err(PyTypeError::new_err(format!(
                        "contexts[{i}]: expected a vexil.Context, got {}",
                        type_name(&part)
                    )));
                };
                match part.get().inner.parts() {
                    [single] => parts.push(single.clone()),
                    _ => {
                        return Err(InvalidContextError::new_err(format!(
                            "contexts[{i}]: a multi-kind context cannot nest another multi-kind context"
                        )));
                    }
                }
            }
            EngineContext::multi(parts)
                .map(|inner| Context { inner })
                .map_err(|err| InvalidContextError::new_err(err.to_string()))
        })
    }

    /// Reads the canonical JSON shape: `{"kind": "user", "key": "alice", "attributes":
    /// {...}}` or `{"kind": "multi", "contexts": [...]}`.
    #[staticmethod]
    fn from_dict(value: &Bound<'_, PyAny>) -> PyResult<Context> {
        crate::guard(|| {
            if !value.is_instance_of::<PyDict>() {
                return Err(PyTypeError::new_err(format!(
                    "context: expected a dict, got {}",
                    type_name(value)
                )));
            }
            let json = to_json(value).map_err(|e| e.into_err("context"))?;
            EngineContext::from_json(&json)
                .map(|inner| Context { inner })
                .map_err(|err| InvalidContextError::new_err(err.to_string()))
        })
    }

    /// The canonical JSON shape, as a dict.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        crate::guard(|| to_python(py, &self.inner.to_json()))
    }

    /// The kind, or `"multi"` for a multi-kind context.
    #[getter]
    fn kind(&self) -> &str {
        match self.inner.parts() {
            [single] => single.kind(),
            _ => "multi",
        }
    }

    /// The key of a single-kind context; `None` for a multi-kind one.
    #[getter]
    fn key(&self) -> Option<&str> {
        match self.inner.parts() {
            [single] => Some(single.key()),
            _ => None,
        }
    }

    /// The kinds this context carries.
    #[getter]
    fn kinds(&self) -> Vec<&str> {
        self.inner.parts().iter().map(SingleContext::kind).collect()
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<Context>()
            .is_ok_and(|other| other.get().inner == self.inner)
    }

    fn __repr__(&self) -> String {
        format!("vexil.Context({})", self.inner.to_json())
    }
}

fn set_attributes(
    single: &mut SingleContext,
    attributes: &Bound<'_, PyDict>,
) -> Result<(), crate::convert::NotJson> {
    // The same conversion as a JSON object, so that errors name the attribute.
    if let Value::Object(map) = to_json(attributes.as_any())? {
        for (name, value) in map {
            single.set(&name, value);
        }
    }
    Ok(())
}

/// A context argument as a call receives it: a `vexil.Context`, a dict read into a context,
/// or the JSON of a dict the fast reading could not take (the core reads it, once, and
/// answers an invalid one with `ERROR`/`INVALID_CONTEXT` after the flag's own errors).
#[derive(Debug)]
pub(crate) enum ContextArg<'a> {
    Held(&'a EngineContext),
    Built(EngineContext),
    Json(Value),
}

impl ContextArg<'_> {
    pub(crate) fn as_ref(&self) -> ContextRef<'_> {
        match self {
            ContextArg::Held(context) => ContextRef::Built(context),
            ContextArg::Built(context) => ContextRef::Built(context),
            ContextArg::Json(json) => ContextRef::Json(json),
        }
    }
}

/// Reads a `vexil.Context` or a dict. Anything else is a `TypeError`, and so is a dict
/// holding values that are not JSON (naming where); a dict that is not a valid context is
/// [`ContextArg::Json`] (evaluation never raises for it).
pub(crate) fn context_arg<'a>(object: &'a Bound<'_, PyAny>) -> PyResult<ContextArg<'a>> {
    if let Ok(held) = object.cast::<Context>() {
        return Ok(ContextArg::Held(&held.get().inner));
    }
    let Ok(dict) = object.cast::<PyDict>() else {
        return Err(PyTypeError::new_err(format!(
            "context: expected a vexil.Context or a dict, got {}",
            type_name(object)
        )));
    };
    if let Some(context) = from_dict_fast(dict) {
        return Ok(ContextArg::Built(context));
    }
    let json = to_json(object).map_err(|e| e.into_err("context"))?;
    Ok(ContextArg::Json(json))
}

/// A context that must be valid (identify, track, all_flags, the first context):
/// `InvalidContextError` saying why otherwise.
pub(crate) fn valid_context<'a>(object: &'a Bound<'_, PyAny>) -> PyResult<Cow<'a, EngineContext>> {
    Ok(match context_arg(object)? {
        ContextArg::Held(context) => Cow::Borrowed(context),
        ContextArg::Built(context) => Cow::Owned(context),
        ContextArg::Json(json) => {
            Cow::Owned(vexil_core::context_from_json(&json, "context").map_err(to_py)?)
        }
    })
}

/// The context of a dict, read straight from the Python objects (no intermediate JSON
/// object); `None` when anything is off, for [`context_arg`]'s slow path to explain.
fn from_dict_fast(dict: &Bound<'_, PyDict>) -> Option<EngineContext> {
    let fields = ContextFields::read(dict)?;
    if fields.is_multi()? {
        let parts = fields.contexts?;
        let parts = parts.cast::<PyList>().ok()?;
        let mut singles = Vec::with_capacity(parts.len());
        for part in parts.iter() {
            let part = ContextFields::read(part.cast::<PyDict>().ok()?)?;
            singles.push(part.single()?);
        }
        return EngineContext::multi(singles).ok();
    }
    fields.single().map(EngineContext::from)
}

/// The fields of a context dict the engine reads (others are ignored, as the engine does).
struct ContextFields<'py> {
    kind: Option<Bound<'py, PyAny>>,
    key: Option<Bound<'py, PyAny>>,
    attributes: Option<Bound<'py, PyAny>>,
    contexts: Option<Bound<'py, PyAny>>,
}

impl<'py> ContextFields<'py> {
    /// One pass over the dict: cheaper than a lookup per field for the few entries a context
    /// has. Keys written as literals are interned, so the identity checks usually decide.
    fn read(dict: &Bound<'py, PyDict>) -> Option<ContextFields<'py>> {
        let py = dict.py();
        let names = [
            intern!(py, "kind"),
            intern!(py, "key"),
            intern!(py, "attributes"),
            intern!(py, "contexts"),
        ];
        let mut fields = [None, None, None, None];
        for (name, value) in dict.iter() {
            let slot = match names.iter().position(|known| name.is(known)) {
                Some(slot) => slot,
                None => {
                    let Ok(name) = name.cast::<PyString>() else {
                        continue;
                    };
                    let name = name.to_str().ok()?;
                    match names
                        .iter()
                        .position(|known| known.to_str().ok() == Some(name))
                    {
                        Some(slot) => slot,
                        // Marks of private attributes: the engine reads those (slow path).
                        None if name == "private_attributes" => return None,
                        None => continue,
                    }
                }
            };
            fields[slot] = Some(value);
        }
        let [kind, key, attributes, contexts] = fields;
        Some(ContextFields {
            kind,
            key,
            attributes,
            contexts,
        })
    }

    fn kind(&self) -> Option<&str> {
        match &self.kind {
            None => Some("user"),
            Some(kind) => kind.cast::<PyString>().ok()?.to_str().ok(),
        }
    }

    /// Whether the kind is `multi`; `None` when the kind is not a string.
    fn is_multi(&self) -> Option<bool> {
        self.kind().map(|kind| kind == "multi")
    }

    fn single(&self) -> Option<SingleContext> {
        let key = self.key.as_ref()?.cast::<PyString>().ok()?.to_str().ok()?;
        let mut single = SingleContext::new(self.kind()?, key).ok()?;
        match &self.attributes {
            None => {}
            Some(attributes) if attributes.is_none() => {}
            Some(attributes) => {
                for (name, value) in attributes.cast::<PyDict>().ok()?.iter() {
                    let name = name.cast::<PyString>().ok()?.to_str().ok()?;
                    single.set(name, to_json(&value).ok()?);
                }
            }
        }
        Some(single)
    }
}
