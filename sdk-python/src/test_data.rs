//! `vexil.TestData`: the core's in-memory source of flag data, for an application's tests.

use pyo3::prelude::*;

use crate::convert::to_json;
use crate::to_py;

/// Flags and segments held in memory, standing in for the server in tests: pass it to
/// `vexil.Client(key, test_data=...)`, then change flags one at a time. Each change reaches
/// every client at once (and their change listeners); a flag that would not compile is
/// refused with a `ValueError` naming the field, and nothing changes.
#[pyclass(frozen, module = "vexil", name = "TestData")]
#[derive(Debug, Default)]
pub struct TestData {
    pub(crate) inner: vexil_core::TestData,
}

#[pymethods]
impl TestData {
    #[new]
    fn new() -> TestData {
        TestData::default()
    }

    /// Adds or replaces a flag given as a dict in the export format (`key`, `kind`,
    /// `variations`, `on`, `rules`, `fallthrough`, ...).
    fn update_flag(&self, flag: &Bound<'_, PyAny>) -> PyResult<()> {
        let flag = to_json(flag).map_err(|e| e.into_err("flag"))?;
        self.inner.update_flag(flag).map_err(to_py)
    }

    /// Makes flag `key` serve `value` to every context (a flag of the value's type).
    fn set_value(&self, key: &str, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let value = to_json(value).map_err(|e| e.into_err("value"))?;
        self.inner.set_value(key, value).map_err(to_py)
    }

    /// Removes flag `key`; whether it was there.
    fn remove_flag(&self, key: &str) -> bool {
        self.inner.remove_flag(key)
    }

    /// Adds or replaces a segment given as a dict in the export format.
    fn update_segment(&self, segment: &Bound<'_, PyAny>) -> PyResult<()> {
        let segment = to_json(segment).map_err(|e| e.into_err("segment"))?;
        self.inner.update_segment(segment).map_err(to_py)
    }

    /// Removes segment `key`; whether it was there.
    fn remove_segment(&self, key: &str) -> bool {
        self.inner.remove_segment(key)
    }

    /// The keys of the flags held, in order.
    #[getter]
    fn flag_keys(&self) -> Vec<String> {
        self.inner.flag_keys()
    }

    fn __repr__(&self) -> String {
        format!("vexil.TestData(flags={:?})", self.inner.flag_keys())
    }
}
