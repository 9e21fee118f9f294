//! The C ABI given any bytes where it takes text (contexts, options, keys, flag keys, event
//! names, defaults) and any numbers, including bytes that are not UTF-8: every call returns a code, and where
//! it succeeds, what it hands out is usable and released cleanly. Clients are made offline,
//! on a bootstrap of the conformance rulesets (a networked client would wait on the network).
#![no_main]

use std::ffi::c_char;
use std::ptr;
use std::sync::OnceLock;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use vexil_ffi::*;

#[derive(Debug, Arbitrary)]
struct Input {
    context: Vec<u8>,
    /// A well-formed server key, or these bytes.
    sdk_key: Option<Vec<u8>>,
    options: Vec<u8>,
    flag: Vec<u8>,
    event_name: Vec<u8>,
    value: Option<f64>,
    kind: i32,
    default: Vec<u8>,
}

/// A ruleset file for offline clients: the flags and segments of the conformance vectors.
fn bootstrap() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| {
        let mut flags = Vec::new();
        let mut segments = Vec::new();
        for file in [
            include_str!("../../conformance/vectors/rules.json"),
            include_str!("../../conformance/vectors/segments.json"),
            include_str!("../../conformance/vectors/experiments.json"),
            include_str!("../../conformance/vectors/multikind.json"),
        ] {
            let vectors: serde_json::Value = serde_json::from_str(file).expect("vector file");
            flags.extend(vectors["flags"].as_array().cloned().unwrap_or_default());
            segments.extend(vectors["segments"].as_array().cloned().unwrap_or_default());
        }
        let path = std::env::temp_dir().join(format!("vexil-fuzz-{}.json", std::process::id()));
        let ruleset = serde_json::json!({"flags": flags, "segments": segments});
        std::fs::write(&path, ruleset.to_string()).expect("write the bootstrap file");
        path.to_string_lossy().into_owned()
    })
}

fn ptr_of(bytes: &[u8]) -> *const c_char {
    bytes.as_ptr().cast()
}

/// Frees an error message, if the call wrote one.
fn release(message: *mut c_char) {
    vexil_string_free(message);
}

fuzz_target!(|input: Input| {
    let mut error = ptr::null_mut();
    let mut context = ptr::null_mut();
    let code = vexil_context_new(
        ptr_of(&input.context),
        input.context.len(),
        &mut context,
        &mut error,
    );
    release(error);
    if code == VexilCode::Ok {
        let mut json = ptr::null_mut();
        let mut len = 0;
        let mut error = ptr::null_mut();
        assert_eq!(
            vexil_context_to_json(context, &mut json, &mut len, &mut error),
            VexilCode::Ok
        );
        release(error);
        vexil_string_free(json);
    }

    // Only offline clients: options that are a JSON object are made offline (and given the
    // conformance rulesets as a bootstrap unless they name one); any other bytes are passed
    // as they are, and refused before any network is used.
    let options = match serde_json::from_slice::<serde_json::Value>(&input.options) {
        Ok(serde_json::Value::Object(mut options)) => {
            options.insert("offline".into(), true.into());
            options
                .entry("bootstrap")
                .or_insert_with(|| bootstrap().into());
            serde_json::to_vec(&options).expect("JSON")
        }
        Ok(_) | Err(_) => input.options.clone(),
    };
    let sdk_key = input
        .sdk_key
        .clone()
        .unwrap_or_else(|| b"vxl-server-0123456789abcdef0123456789abcdef".to_vec());
    {
        let mut client = ptr::null_mut();
        let mut error = ptr::null_mut();
        let code = vexil_client_new(
            ptr_of(&sdk_key),
            sdk_key.len(),
            ptr_of(&options),
            options.len(),
            &mut client,
            &mut error,
        );
        release(error);
        if code == VexilCode::Ok {
            if !context.is_null() {
                let mut value = false;
                let mut error = ptr::null_mut();
                let _ = vexil_bool_variation(
                    client,
                    ptr_of(&input.flag),
                    input.flag.len(),
                    context,
                    true,
                    &mut value,
                    &mut error,
                );
                release(error);
                let mut error = ptr::null_mut();
                let _ = vexil_track(
                    client,
                    ptr_of(&input.event_name),
                    input.event_name.len(),
                    context,
                    input.value.is_some(),
                    input.value.unwrap_or(0.0),
                    &mut error,
                );
                release(error);
            }
            let mut detail = ptr::null_mut();
            let mut len = 0;
            let mut error = ptr::null_mut();
            let _ = vexil_variation_detail_json_context(
                client,
                ptr_of(&input.flag),
                input.flag.len(),
                ptr_of(&input.context),
                input.context.len(),
                input.kind,
                ptr_of(&input.default),
                input.default.len(),
                &mut detail,
                &mut len,
                &mut error,
            );
            release(error);
            vexil_string_free(detail);
            let mut error = ptr::null_mut();
            let _ = vexil_client_close(client, &mut error);
            release(error);
            let mut error = ptr::null_mut();
            assert_eq!(vexil_client_free(client, &mut error), VexilCode::Ok);
            release(error);
        }
    }
    vexil_context_free(context);
});
