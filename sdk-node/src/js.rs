//! Thin, allocation-conscious reads of JavaScript values through raw Node-API calls. The hot
//! path (a variation call with a plain-object context) reads a few properties and strings;
//! napi-rs's generic conversions allocate for each, these do not.

use std::ffi::CStr;
use std::ptr::{self, NonNull};

use napi::bindgen_prelude::{FromNapiValue, TypeTag};
use napi::sys;
use serde_json::Value;

/// The JavaScript type of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Undefined,
    Null,
    Boolean,
    Number,
    String,
    Object,
    Function,
    Other,
}

impl Type {
    pub fn name(self) -> &'static str {
        match self {
            Type::Undefined => "undefined",
            Type::Null => "null",
            Type::Boolean => "a boolean",
            Type::Number => "a number",
            Type::String => "a string",
            Type::Object => "an object",
            Type::Function => "a function",
            Type::Other => "a symbol, bigint or external",
        }
    }
}

/// A Node-API environment, valid for the duration of the call that handed it over (always on
/// the JavaScript thread).
#[derive(Debug, Clone, Copy)]
pub struct Js {
    pub env: sys::napi_env,
}

/// Strings up to this many bytes are read without a heap allocation.
const STACK_STRING: usize = 256;

impl Js {
    pub fn type_of(self, value: sys::napi_value) -> Type {
        let mut kind = 0;
        // SAFETY: `env` and `value` come from the current Node-API call.
        if unsafe { sys::napi_typeof(self.env, value, &mut kind) } != sys::Status::napi_ok {
            return Type::Other;
        }
        match kind {
            sys::ValueType::napi_undefined => Type::Undefined,
            sys::ValueType::napi_null => Type::Null,
            sys::ValueType::napi_boolean => Type::Boolean,
            sys::ValueType::napi_number => Type::Number,
            sys::ValueType::napi_string => Type::String,
            sys::ValueType::napi_object => Type::Object,
            sys::ValueType::napi_function => Type::Function,
            _ => Type::Other,
        }
    }

    /// `object[name]` (undefined when absent); `None` when the read itself failed (a getter
    /// threw, or `object` is not an object).
    pub fn get(self, object: sys::napi_value, name: &CStr) -> Option<sys::napi_value> {
        let mut value = ptr::null_mut();
        // SAFETY: as above; `name` is NUL-terminated.
        let status =
            unsafe { sys::napi_get_named_property(self.env, object, name.as_ptr(), &mut value) };
        if status == sys::Status::napi_ok {
            Some(value)
        } else {
            self.clear_exception();
            None
        }
    }

    /// A getter that threw leaves an exception pending; the value is treated as unreadable.
    pub fn clear_exception(self) {
        let mut pending = false;
        // SAFETY: as above.
        unsafe {
            if sys::napi_is_exception_pending(self.env, &mut pending) == sys::Status::napi_ok
                && pending
            {
                let mut exception = ptr::null_mut();
                sys::napi_get_and_clear_last_exception(self.env, &mut exception);
            }
        }
    }

    /// Calls `f` with the string `value` (which must be a string), without allocating for
    /// short strings.
    pub fn with_str<R>(self, value: sys::napi_value, f: impl FnOnce(&str) -> R) -> Option<R> {
        let mut buffer = [0u8; STACK_STRING];
        let written = self.string_into(value, &mut buffer)?;
        // A string that did not fit stops up to 3 bytes short of the end (a character is
        // never split), so anything shorter than that was read whole.
        if written + 4 < STACK_STRING {
            return std::str::from_utf8(&buffer[..written]).ok().map(f);
        }
        self.string(value).map(|s| f(&s))
    }

    /// The string `value` (which must be a string), copied.
    pub fn string(self, value: sys::napi_value) -> Option<String> {
        let mut length = 0usize;
        // SAFETY: a null buffer asks for the length only.
        let status = unsafe {
            sys::napi_get_value_string_utf8(self.env, value, ptr::null_mut(), 0, &mut length)
        };
        if status != sys::Status::napi_ok {
            return None;
        }
        // Room for the string and its NUL.
        let mut buffer = vec![0u8; length + 1];
        let written = self.string_into(value, &mut buffer)?;
        buffer.truncate(written);
        String::from_utf8(buffer).ok()
    }

    /// Copies the string `value` (which must be a string) into `buffer`, NUL-terminated and
    /// cut short (never inside a character) where it does not fit; answers the bytes written,
    /// the NUL not counted.
    fn string_into(self, value: sys::napi_value, buffer: &mut [u8]) -> Option<usize> {
        let mut written = 0usize;
        // SAFETY: Node-API writes at most `buffer.len()` bytes, NUL included.
        let status = unsafe {
            sys::napi_get_value_string_utf8(
                self.env,
                value,
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                &mut written,
            )
        };
        (status == sys::Status::napi_ok).then_some(written)
    }

    pub fn bool(self, value: sys::napi_value) -> Option<bool> {
        let mut result = false;
        // SAFETY: as above.
        (unsafe { sys::napi_get_value_bool(self.env, value, &mut result) } == sys::Status::napi_ok)
            .then_some(result)
    }

    pub fn number(self, value: sys::napi_value) -> Option<f64> {
        let mut result = 0.0;
        // SAFETY: as above.
        (unsafe { sys::napi_get_value_double(self.env, value, &mut result) }
            == sys::Status::napi_ok)
            .then_some(result)
    }

    pub fn is_array(self, value: sys::napi_value) -> bool {
        let mut result = false;
        // SAFETY: as above.
        unsafe {
            sys::napi_is_array(self.env, value, &mut result) == sys::Status::napi_ok && result
        }
    }

    /// The elements of an array.
    pub fn elements(self, array: sys::napi_value) -> Option<Vec<sys::napi_value>> {
        let mut length = 0u32;
        // SAFETY: as above.
        if unsafe { sys::napi_get_array_length(self.env, array, &mut length) }
            != sys::Status::napi_ok
        {
            return None;
        }
        (0..length)
            .map(|i| {
                let mut element = ptr::null_mut();
                // SAFETY: as above.
                (unsafe { sys::napi_get_element(self.env, array, i, &mut element) }
                    == sys::Status::napi_ok)
                    .then_some(element)
            })
            .collect()
    }

    /// The object's own enumerable string keys, as JavaScript strings.
    pub fn own_keys(self, object: sys::napi_value) -> Option<Vec<sys::napi_value>> {
        let mut names = ptr::null_mut();
        // SAFETY: as above.
        let status = unsafe {
            sys::napi_get_all_property_names(
                self.env,
                object,
                sys::KeyCollectionMode::own_only,
                sys::KeyFilter::enumerable | sys::KeyFilter::skip_symbols,
                sys::KeyConversion::numbers_to_strings,
                &mut names,
            )
        };
        if status != sys::Status::napi_ok {
            return None;
        }
        self.elements(names)
    }

    /// `object[key]` for a key given as a JavaScript value.
    pub fn get_by(self, object: sys::napi_value, key: sys::napi_value) -> Option<sys::napi_value> {
        let mut value = ptr::null_mut();
        // SAFETY: as above.
        let status = unsafe { sys::napi_get_property(self.env, object, key, &mut value) };
        if status == sys::Status::napi_ok {
            Some(value)
        } else {
            self.clear_exception();
            None
        }
    }

    /// [`Js::json`] of an object without its properties named in `except` (options that are
    /// not data, such as functions).
    pub fn json_except(self, object: sys::napi_value, except: &[&str]) -> Result<Value, String> {
        let mut map = serde_json::Map::new();
        for key in self.own_keys(object).ok_or("cannot read its keys")? {
            let name = self.string(key).ok_or("cannot read a key")?;
            if except.contains(&name.as_str()) {
                continue;
            }
            let item = self.get_by(object, key).ok_or("cannot read a property")?;
            if self.type_of(item) == Type::Undefined {
                continue;
            }
            let item = self.json(item).map_err(|e| format!("{name}: {e}"))?;
            map.insert(name, item);
        }
        Ok(Value::Object(map))
    }

    /// The value as JSON, as `JSON.stringify` would see it (`undefined` properties are left
    /// out); `Err` names what cannot be represented.
    pub fn json(self, value: sys::napi_value) -> Result<Value, String> {
        match self.type_of(value) {
            Type::Undefined => Ok(Value::Null),
            Type::Object if !self.is_array(value) => self.json_except(value, &[]),
            Type::Number => match self.number(value) {
                // Whole numbers a double holds exactly become JSON integers, as JSON.stringify
                // writes them (and as options such as `capacity` require).
                Some(n) if n.fract() == 0.0 && n.abs() <= 9_007_199_254_740_992.0 => {
                    Ok(Value::from(n as i64))
                }
                Some(n) => serde_json::Number::from_f64(n)
                    .map(Value::Number)
                    .ok_or_else(|| format!("{n} is not a finite number")),
                None => Err("cannot read a number".into()),
            },
            // SAFETY: `env` and `value` come from the current Node-API call.
            _ => unsafe { Value::from_napi_value(self.env, value) }.map_err(|e| e.reason.clone()),
        }
    }

    /// The Rust value napi-rs wrapped in `value` if `value` is an instance of the class `T`
    /// (checked by its type tag), else `None`. The JavaScript object owns the value: the
    /// pointer is valid while the object is alive (for an argument or `this`, the call).
    pub fn unwrap_class<T: TypeTag>(self, value: sys::napi_value) -> Option<NonNull<T>> {
        let tag = T::type_tag();
        let mut tagged = false;
        // SAFETY: `env` and `value` come from the current call; the tag outlives the call.
        let status = unsafe { sys::napi_check_object_type_tag(self.env, value, &tag, &mut tagged) };
        if status != sys::Status::napi_ok || !tagged {
            return None;
        }
        let mut wrapped = ptr::null_mut();
        // SAFETY: an object with `T`'s tag was made by napi-rs for `T`, which wraps a boxed
        // `T` in it.
        if unsafe { sys::napi_unwrap(self.env, value, &mut wrapped) } != sys::Status::napi_ok {
            return None;
        }
        NonNull::new(wrapped.cast::<T>())
    }

    pub fn strict_equals(self, a: sys::napi_value, b: sys::napi_value) -> bool {
        let mut result = false;
        // SAFETY: as above.
        unsafe {
            sys::napi_strict_equals(self.env, a, b, &mut result) == sys::Status::napi_ok && result
        }
    }
}
