//! The typed variation calls as raw Node-API callbacks: the SDK's hot path.
//!
//! napi-rs's method glue tracks every borrow of a class instance in a process-wide table
//! (a mutex, a hash map and several allocations per call), which costs more than the
//! evaluation itself. At load time, [`install_fast_variations`] replaces the four typed
//! variation methods on `Client.prototype` with plain callbacks that read their arguments,
//! check `this` by its type tag and call the same bodies (`client::bool_variation`, ...) as
//! the methods napi-rs declares, which keep giving `index.d.ts` its types and behave the
//! same.

// napi-rs registers the module hook only outside `cargo test`, so there it is unused.
#![cfg_attr(test, allow(dead_code))]

use std::ptr::{self, NonNull};

use napi::bindgen_prelude::{Object, ToNapiValue};
use napi::{Env, JsValue, sys};
use napi_derive::napi;
use serde_json::Value;

use crate::client::{self, Client, VariationArgs};
use crate::error::{ErrorCode, Result, error, guard, internal, invalid_argument};
use crate::js::Js;

/// Replaces `Client.prototype`'s typed variation methods with the raw callbacks below.
#[napi(module_exports)]
pub fn install_fast_variations(env: Env, exports: Object) -> napi::Result<()> {
    let js = Js { env: env.raw() };
    let missing = |what: &str| napi::Error::from_reason(format!("cannot install {what}"));
    let class = js
        .get(exports.raw(), c"Client")
        .ok_or_else(|| missing("Client"))?;
    let prototype = js
        .get(class, c"prototype")
        .ok_or_else(|| missing("Client.prototype"))?;
    let method = |name: &'static std::ffi::CStr, callback: sys::napi_callback| {
        sys::napi_property_descriptor {
            utf8name: name.as_ptr(),
            name: ptr::null_mut(),
            method: callback,
            getter: None,
            setter: None,
            value: ptr::null_mut(),
            // As a class method: writable and configurable, not enumerable.
            attributes: sys::PropertyAttributes::writable | sys::PropertyAttributes::configurable,
            data: ptr::null_mut(),
        }
    };
    let methods = [
        method(c"boolVariation", Some(bool_variation)),
        method(c"stringVariation", Some(string_variation)),
        method(c"numberVariation", Some(number_variation)),
        method(c"jsonVariation", Some(json_variation)),
    ];
    // SAFETY: `env` and `prototype` belong to the module's initialisation; the descriptors
    // point at static names and functions.
    let status = unsafe {
        sys::napi_define_properties(env.raw(), prototype, methods.len(), methods.as_ptr())
    };
    if status != sys::Status::napi_ok {
        return Err(missing("the variation methods"));
    }
    Ok(())
}

/// The `Client` a call was made on.
#[derive(Clone, Copy)]
struct ClientHandle(NonNull<Client>);

impl ClientHandle {
    /// The core client. Asked for only once no more JavaScript runs during the call, so
    /// that no method taking `&mut Client` can be running at the same time.
    fn core<'c>(self) -> &'c vexil_core::Client {
        // SAFETY: the pointer is the `Client` napi-rs wrapped in `this`, which the call
        // keeps alive; no JavaScript (hence no other method of this client) runs while the
        // reference is used.
        unsafe { self.0.as_ref() }.core()
    }
}

/// Reads `this` and the three arguments, runs `body` (a panic becomes a `VEXIL_PANIC`
/// error) and converts its result; an error is thrown and the call returns nothing.
///
/// # Safety
///
/// `env` and `info` must be those Node-API passed to the running callback.
unsafe fn respond<T>(
    env: sys::napi_env,
    info: sys::napi_callback_info,
    body: impl FnOnce(Js, VariationArgs, ClientHandle) -> Result<T>,
    to_js: impl FnOnce(Js, T) -> Result<sys::napi_value>,
) -> sys::napi_value {
    let js = Js { env };
    let outcome = guard(|| {
        let mut argc = 3usize;
        // Node-API fills the arguments not passed with `undefined`.
        let mut args: VariationArgs = [ptr::null_mut(); 3];
        let mut this = ptr::null_mut();
        // SAFETY: `args` has room for `argc` values.
        let status = unsafe {
            sys::napi_get_cb_info(
                env,
                info,
                &mut argc,
                args.as_mut_ptr(),
                &mut this,
                ptr::null_mut(),
            )
        };
        if status != sys::Status::napi_ok {
            return Err(error(
                ErrorCode::Internal,
                "cannot read the call's arguments",
            ));
        }
        let client = js
            .unwrap_class::<Client>(this)
            .ok_or_else(|| invalid_argument("this", "expected a Client"))?;
        let value = body(js, args, ClientHandle(client))?;
        to_js(js, value)
    });
    match outcome {
        Ok(value) => value,
        Err(err) => {
            // SAFETY: on the JavaScript thread, inside the callback.
            unsafe { napi::JsError::from(err).throw_into(env) };
            ptr::null_mut()
        }
    }
}

/// The JavaScript value a Node-API function creates: `create` calls it with the place it
/// writes the value to, and answers its status.
fn created(
    create: impl FnOnce(*mut sys::napi_value) -> sys::napi_status,
) -> Result<sys::napi_value> {
    let mut value = ptr::null_mut();
    if create(&mut value) == sys::Status::napi_ok {
        Ok(value)
    } else {
        Err(error(ErrorCode::Internal, "cannot create the result"))
    }
}

/// A raw callback for one typed variation: `respond` with the body the napi-rs method of
/// the same name runs (`client::$name`), its value converted to JavaScript by `to_js`.
macro_rules! variation_callback {
    ($name:ident, $to_js:expr) => {
        unsafe extern "C" fn $name(
            env: sys::napi_env,
            info: sys::napi_callback_info,
        ) -> sys::napi_value {
            let to_js = $to_js;
            // SAFETY: Node-API calls this with the callback's own env and info.
            unsafe {
                respond(
                    env,
                    info,
                    |js, args, client| client::$name(js, args, || client.core()),
                    to_js,
                )
            }
        }
    };
}

variation_callback!(bool_variation, |js: Js, value: bool| {
    // SAFETY: on the JavaScript thread, inside the callback.
    created(|result| unsafe { sys::napi_get_boolean(js.env, value, result) })
});

variation_callback!(string_variation, |js: Js, value: String| {
    // SAFETY: as above; the pointer and length are those of `value`.
    created(|result| unsafe {
        sys::napi_create_string_utf8(js.env, value.as_ptr().cast(), value.len() as isize, result)
    })
});

variation_callback!(number_variation, |js: Js, value: f64| {
    // SAFETY: as above.
    created(|result| unsafe { sys::napi_create_double(js.env, value, result) })
});

variation_callback!(json_variation, |js: Js, value: Value| {
    // SAFETY: as above.
    unsafe { Value::to_napi_value(js.env, value) }.map_err(internal)
});
