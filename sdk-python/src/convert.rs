//! Python objects ↔ JSON values (`serde_json::Value`), the form the core takes and gives.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::{Map, Number, Value};

/// Why a Python object is not JSON, and where in it (the path is built while unwinding).
#[derive(Debug)]
pub(crate) struct NotJson {
    path: Vec<String>,
    message: String,
    type_error: bool,
}

impl NotJson {
    fn at(mut self, segment: String) -> NotJson {
        self.path.push(segment);
        self
    }

    /// The Python exception, naming `root` (an argument name) and the path inside it.
    pub(crate) fn into_err(self, root: &str) -> PyErr {
        let mut name = root.to_owned();
        for segment in self.path.iter().rev() {
            name.push_str(segment);
        }
        let message = format!("{name}: {}", self.message);
        if self.type_error {
            PyTypeError::new_err(message)
        } else {
            PyValueError::new_err(message)
        }
    }
}

fn type_error(message: String) -> NotJson {
    NotJson {
        path: Vec::new(),
        message,
        type_error: true,
    }
}

fn value_error(message: String) -> NotJson {
    NotJson {
        path: Vec::new(),
        message,
        type_error: false,
    }
}

/// The JSON form of a Python value: None, bool, int, float, str, list, tuple and dict with
/// str keys, nested.
pub(crate) fn to_json(object: &Bound<'_, PyAny>) -> Result<Value, NotJson> {
    if object.is_none() {
        return Ok(Value::Null);
    }
    // bool before int: bool is a subclass of int.
    if let Ok(b) = object.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if let Ok(s) = object.cast::<PyString>() {
        return s
            .to_str()
            .map(|s| Value::String(s.to_owned()))
            .map_err(|_| value_error("a string that is not valid UTF-8".into()));
    }
    if let Ok(i) = object.cast::<PyInt>() {
        if let Ok(n) = i.extract::<i64>() {
            return Ok(Value::Number(n.into()));
        }
        if let Ok(n) = i.extract::<u64>() {
            return Ok(Value::Number(n.into()));
        }
        return Err(value_error(
            "an integer out of the 64-bit range JSON numbers keep exactly".into(),
        ));
    }
    if let Ok(f) = object.cast::<PyFloat>() {
        let f = f.value();
        return Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| value_error(format!("{f} is not a finite number")));
    }
    if let Ok(d) = object.cast::<PyDict>() {
        let mut map = Map::with_capacity(d.len());
        for (key, value) in d.iter() {
            let Ok(key) = key.cast::<PyString>() else {
                return Err(type_error(format!(
                    "dict keys must be str, got {}",
                    type_name(&key)
                )));
            };
            let key = key
                .to_str()
                .map_err(|_| value_error("a key that is not valid UTF-8".into()))?;
            let value = to_json(&value).map_err(|e| e.at(format!("[{key:?}]")))?;
            map.insert(key.to_owned(), value);
        }
        return Ok(Value::Object(map));
    }
    if let Ok(l) = object.cast::<PyList>() {
        return json_array(l.iter());
    }
    if let Ok(t) = object.cast::<PyTuple>() {
        return json_array(t.iter());
    }
    Err(type_error(format!(
        "{} is not JSON (use None, bool, int, float, str, list or dict)",
        type_name(object)
    )))
}

/// A list's or tuple's items as a JSON array; a failure names the item's index.
fn json_array<'py>(items: impl Iterator<Item = Bound<'py, PyAny>>) -> Result<Value, NotJson> {
    items
        .enumerate()
        .map(|(i, item)| to_json(&item).map_err(|e| e.at(format!("[{i}]"))))
        .collect::<Result<_, _>>()
        .map(Value::Array)
}

pub(crate) fn type_name(object: &Bound<'_, PyAny>) -> String {
    object
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "this object".into())
}

/// The Python form of a JSON value: integers stay int, other numbers become float.
pub(crate) fn to_python<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else {
                PyFloat::new(py, n.as_f64().unwrap_or(f64::NAN)).into_any()
            }
        }
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(to_python(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (key, item) in map {
                dict.set_item(key, to_python(py, item)?)?;
            }
            dict.into_any()
        }
    })
}
