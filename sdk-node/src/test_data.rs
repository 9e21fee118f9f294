//! `TestData`: the core's in-memory source of flag data, for an application's tests.

use napi::bindgen_prelude::Unknown;
use napi::{Env, JsValue, sys};
use napi_derive::napi;

use crate::error::{Result, from_core, guard, invalid_argument};
use crate::js::Js;

/// Flags and segments held in memory, standing in for the server in tests: pass it as the
/// `testData` option of `new Client(key, { testData })`, then change flags one at a time.
/// Each change reaches every client at once (and its `'change'` listeners); a flag that would
/// not compile throws `VEXIL_INVALID_ARGUMENT` naming the field, and nothing changes.
#[napi]
#[derive(Debug, Default)]
pub struct TestData {
    pub(crate) inner: vexil_core::TestData,
}

fn json_arg(env: &Env, value: Unknown, field: &str) -> Result<serde_json::Value> {
    let js = Js { env: env.raw() };
    js.json(value.raw())
        .map_err(|problem| invalid_argument(field, problem))
}

#[napi]
impl TestData {
    #[napi(constructor)]
    pub fn new() -> Self {
        TestData::default()
    }

    /// Adds or replaces a flag given as an object in the export format (`key`, `kind`,
    /// `variations`, `on`, `rules`, `fallthrough`, ...).
    #[napi(ts_args_type = "flag: object")]
    pub fn update_flag(&self, env: Env, flag: Unknown) -> Result<()> {
        guard(|| {
            let flag = json_arg(&env, flag, "flag")?;
            self.inner.update_flag(flag).map_err(from_core)
        })
    }

    /// Makes flag `key` serve `value` to every context (a flag of the value's type).
    #[napi(ts_args_type = "key: string, value: unknown")]
    pub fn set_value(&self, env: Env, key: String, value: Unknown) -> Result<()> {
        guard(|| {
            let value = json_arg(&env, value, "value")?;
            self.inner.set_value(&key, value).map_err(from_core)
        })
    }

    /// Removes flag `key`; whether it was there.
    #[napi]
    pub fn remove_flag(&self, key: String) -> bool {
        self.inner.remove_flag(&key)
    }

    /// Adds or replaces a segment given as an object in the export format.
    #[napi(ts_args_type = "segment: object")]
    pub fn update_segment(&self, env: Env, segment: Unknown) -> Result<()> {
        guard(|| {
            let segment = json_arg(&env, segment, "segment")?;
            self.inner.update_segment(segment).map_err(from_core)
        })
    }

    /// Removes segment `key`; whether it was there.
    #[napi]
    pub fn remove_segment(&self, key: String) -> bool {
        self.inner.remove_segment(&key)
    }

    /// The keys of the flags held, in order.
    #[napi(getter)]
    pub fn flag_keys(&self) -> Vec<String> {
        self.inner.flag_keys()
    }
}

/// The `testData` option: a `TestData`, or `undefined`.
pub fn read_test_data(
    js: Js,
    options: Option<sys::napi_value>,
) -> Result<Option<vexil_core::TestData>> {
    let Some(value) = options
        .filter(|o| js.type_of(*o) == crate::js::Type::Object)
        .and_then(|o| js.get(o, c"testData"))
        .filter(|v| js.type_of(*v) != crate::js::Type::Undefined)
    else {
        return Ok(None);
    };
    match js.unwrap_class::<TestData>(value) {
        // SAFETY: the options object, an argument of this call, keeps the `TestData` alive for
        // the call; the core's data is cloned out of it.
        Some(test_data) => Ok(Some(unsafe { test_data.as_ref() }.inner.clone())),
        None => Err(invalid_argument(
            "options.testData",
            format!("expected a TestData, got {}", js.type_of(value).name()),
        )),
    }
}
