//! The C ABI called as C would call it: misuse gives error codes and messages, never a
//! panic across the boundary; an offline client bootstrapped from a file evaluates.

use std::ffi::{CStr, c_char};
use std::ptr::{null, null_mut};

use serde_json::{Value, json};
use vexil_ffi::*;

/// Takes an error message out of the library.
fn message(ptr: *mut c_char) -> String {
    assert!(!ptr.is_null(), "a failure comes with a message");
    let text = unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned();
    vexil_string_free(ptr);
    text
}

fn take(ptr: *mut c_char, len: usize) -> String {
    let bytes = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) }.to_vec();
    vexil_string_free(ptr);
    String::from_utf8(bytes).unwrap()
}

fn context(json: &str) -> *mut VexilContext {
    let mut out = null_mut();
    let code = vexil_context_new(json.as_ptr().cast(), json.len(), &mut out, null_mut());
    assert_eq!(code, VexilCode::Ok);
    out
}

/// An offline client serving the flags of `flags` from a bootstrap file.
fn offline_client(flags: Value) -> (*mut VexilClient, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ruleset.json");
    std::fs::write(&path, json!({"flags": flags, "segments": []}).to_string()).unwrap();
    let options = json!({"offline": true, "bootstrap": path}).to_string();
    let key = "vxl-server-test";
    let mut client = null_mut();
    let mut error = null_mut();
    let code = vexil_client_new(
        key.as_ptr().cast(),
        key.len(),
        options.as_ptr().cast(),
        options.len(),
        &mut client,
        &mut error,
    );
    assert_eq!(code, VexilCode::Ok);
    assert!(error.is_null(), "no message on success");
    (client, dir)
}

fn flags() -> Value {
    json!([
        {"key": "checkout", "kind": "bool", "variations": [false, true], "on": true,
         "off_variation": 0, "fallthrough": {"variation": 1}},
        {"key": "banner", "kind": "string", "variations": ["a\u{0}b", "plain"], "on": true,
         "fallthrough": {"variation": 0}},
        {"key": "limit", "kind": "number", "variations": [1.5, 2], "on": true,
         "fallthrough": {"variation": 0}},
        {"key": "layout", "kind": "json", "variations": [{"columns": 3}], "on": true,
         "fallthrough": {"variation": 0}},
    ])
}

#[test]
fn variations_of_an_offline_bootstrapped_client() {
    let (client, _dir) = offline_client(flags());
    let alice = context(r#"{"kind":"user","key":"alice"}"#);
    let key = "checkout";
    let mut value = false;
    let code = vexil_bool_variation(
        client,
        key.as_ptr().cast(),
        key.len(),
        alice,
        false,
        &mut value,
        null_mut(),
    );
    assert_eq!((code, value), (VexilCode::Ok, true));

    let (mut out, mut len) = (null_mut(), 0);
    let key = "banner";
    let code = vexil_string_variation(
        client,
        key.as_ptr().cast(),
        key.len(),
        alice,
        null(),
        0,
        &mut out,
        &mut len,
        null_mut(),
    );
    assert_eq!(code, VexilCode::Ok);
    assert_eq!(take(out, len), "a\u{0}b", "a NUL inside a value survives");

    let mut number = 0.0;
    let key = "limit";
    let code = vexil_number_variation(
        client,
        key.as_ptr().cast(),
        key.len(),
        alice,
        9.0,
        &mut number,
        null_mut(),
    );
    assert_eq!((code, number), (VexilCode::Ok, 1.5));

    let key = "layout";
    let default = "null";
    let code = vexil_json_variation(
        client,
        key.as_ptr().cast(),
        key.len(),
        alice,
        default.as_ptr().cast(),
        default.len(),
        &mut out,
        &mut len,
        null_mut(),
    );
    assert_eq!(code, VexilCode::Ok);
    assert_eq!(
        serde_json::from_str::<Value>(&take(out, len)).unwrap(),
        json!({"columns": 3})
    );

    // Detail: the wrong type answers the default with its reason, and says where data came from.
    let key = "checkout";
    let default = "\"d\"";
    let code = vexil_variation_detail(
        client,
        key.as_ptr().cast(),
        key.len(),
        alice,
        VexilValueKind::String as i32,
        default.as_ptr().cast(),
        default.len(),
        &mut out,
        &mut len,
        null_mut(),
    );
    assert_eq!(code, VexilCode::Ok);
    let detail: Value = serde_json::from_str(&take(out, len)).unwrap();
    assert_eq!(detail["value"], "d");
    assert_eq!(
        detail["reason"],
        json!({"kind": "ERROR", "error_kind": "WRONG_TYPE"})
    );
    assert_eq!(detail["source"], "BOOTSTRAP");

    let code = vexil_variation_detail(
        client,
        key.as_ptr().cast(),
        key.len(),
        alice,
        VexilValueKind::Bool as i32,
        "false".as_ptr().cast(),
        5,
        &mut out,
        &mut len,
        null_mut(),
    );
    assert_eq!(code, VexilCode::Ok);
    let detail: Value = serde_json::from_str(&take(out, len)).unwrap();
    assert_eq!(
        (detail["value"].clone(), detail["variation"].clone()),
        (json!(true), json!(1))
    );
    assert_eq!(detail["reason"], json!({"kind": "FALLTHROUGH"}));

    // A context given as JSON that is not valid is an answer, not a failure.
    let bad_context = r#"{"kind":"user"}"#;
    let code = vexil_variation_detail_json_context(
        client,
        key.as_ptr().cast(),
        key.len(),
        bad_context.as_ptr().cast(),
        bad_context.len(),
        0,
        "false".as_ptr().cast(),
        5,
        &mut out,
        &mut len,
        null_mut(),
    );
    assert_eq!(code, VexilCode::Ok);
    let detail: Value = serde_json::from_str(&take(out, len)).unwrap();
    assert_eq!(
        detail["reason"],
        json!({"kind": "ERROR", "error_kind": "INVALID_CONTEXT"})
    );

    let code = vexil_all_flags(client, alice, &mut out, &mut len, null_mut());
    assert_eq!(code, VexilCode::Ok);
    let all: Value = serde_json::from_str(&take(out, len)).unwrap();
    assert_eq!(all.as_object().unwrap().len(), 4);
    assert_eq!(all["limit"]["value"], json!(1.5));

    let mut status = VexilStatus::Ready;
    assert_eq!(
        vexil_client_status(client, &mut status, null_mut()),
        VexilCode::Ok
    );
    assert_eq!(status, VexilStatus::Offline);
    assert_eq!(
        vexil_client_state(client, &mut out, &mut len, null_mut()),
        VexilCode::Ok
    );
    let state: Value = serde_json::from_str(&take(out, len)).unwrap();
    assert_eq!(
        (
            state["status"].clone(),
            state["mode"].clone(),
            state["source"].clone()
        ),
        (json!("OFFLINE"), json!("LOCAL"), json!("BOOTSTRAP"))
    );

    let name = "purchase";
    assert_eq!(
        vexil_track(
            client,
            name.as_ptr().cast(),
            name.len(),
            alice,
            true,
            9.5,
            null_mut()
        ),
        VexilCode::Ok
    );
    let mut delivered = false;
    assert_eq!(
        vexil_client_flush(client, 100, &mut delivered, null_mut()),
        VexilCode::Ok
    );
    assert!(delivered, "offline: nothing to deliver");

    let mut elapsed = 0;
    assert_eq!(
        vexil_benchmark_bool_variation(
            client,
            key.as_ptr().cast(),
            key.len(),
            alice,
            1000,
            &mut elapsed,
            null_mut()
        ),
        VexilCode::Ok
    );
    assert!(elapsed > 0);

    assert_eq!(vexil_client_close(client, null_mut()), VexilCode::Ok);
    assert_eq!(
        vexil_client_close(client, null_mut()),
        VexilCode::Ok,
        "closing twice is fine"
    );
    assert_eq!(
        vexil_client_status(client, &mut status, null_mut()),
        VexilCode::Ok
    );
    assert_eq!(status, VexilStatus::Closed);
    let mut value = false;
    assert_eq!(
        vexil_bool_variation(
            client,
            key.as_ptr().cast(),
            key.len(),
            alice,
            false,
            &mut value,
            null_mut()
        ),
        VexilCode::Ok
    );
    assert!(value, "a closed client answers from its last data");
    assert_eq!(vexil_client_free(client, null_mut()), VexilCode::Ok);
    vexil_context_free(alice);
}

#[test]
fn null_arguments_are_refused_by_name() {
    let (client, _dir) = offline_client(flags());
    let alice = context(r#"{"kind":"user","key":"alice"}"#);
    let key = "checkout";
    let mut value = false;
    let mut error = null_mut();

    let code = vexil_bool_variation(
        null(),
        key.as_ptr().cast(),
        key.len(),
        alice,
        false,
        &mut value,
        &mut error,
    );
    assert_eq!(code, VexilCode::NullArgument);
    assert_eq!(message(error), "client: must not be NULL");

    let code = vexil_bool_variation(client, null(), 3, alice, false, &mut value, &mut error);
    assert_eq!(code, VexilCode::NullArgument);
    assert_eq!(message(error), "flag_key: must not be NULL");

    let code = vexil_bool_variation(
        client,
        key.as_ptr().cast(),
        key.len(),
        null(),
        false,
        &mut value,
        &mut error,
    );
    assert_eq!(code, VexilCode::NullArgument);
    assert_eq!(message(error), "context: must not be NULL");

    let code = vexil_bool_variation(
        client,
        key.as_ptr().cast(),
        key.len(),
        alice,
        false,
        null_mut(),
        &mut error,
    );
    assert_eq!(code, VexilCode::NullArgument);
    assert_eq!(message(error), "out: must not be NULL");

    // Without a message location the code alone is returned.
    let code = vexil_bool_variation(client, null(), 3, alice, false, &mut value, null_mut());
    assert_eq!(code, VexilCode::NullArgument);

    let (mut out, mut len) = (null_mut(), 0usize);
    assert_eq!(
        vexil_all_flags(client, alice, null_mut(), &mut len, null_mut()),
        VexilCode::NullArgument
    );
    assert_eq!(
        vexil_all_flags(client, alice, &mut out, null_mut(), null_mut()),
        VexilCode::NullArgument
    );
    assert!(out.is_null(), "no output is written on failure");
    let mut id = 0;
    assert_eq!(
        vexil_client_on_change(client, None, null_mut(), &mut id, &mut error),
        VexilCode::NullArgument
    );
    assert_eq!(message(error), "callback: must not be NULL");
    assert_eq!(
        vexil_track(client, null(), 4, alice, false, 0.0, null_mut()),
        VexilCode::NullArgument
    );

    // Freeing NULL does nothing.
    vexil_string_free(null_mut());
    vexil_context_free(null_mut());
    assert_eq!(vexil_client_free(null_mut(), null_mut()), VexilCode::Ok);
    assert_eq!(vexil_client_free(client, null_mut()), VexilCode::Ok);
    vexil_context_free(alice);
}

/// Keys are checked as ASCII first and as UTF-8 otherwise: a valid non-ASCII key is
/// accepted (flag keys are ASCII, so it names no flag), and an invalid byte is found
/// wherever it is.
#[test]
fn ascii_and_other_utf8_keys_are_accepted() {
    let (client, _dir) = offline_client(flags());
    let alice = context(r#"{"kind":"user","key":"alice"}"#);
    let evaluate = |key: &[u8], kind: i32| {
        let (mut out, mut len, mut error) = (null_mut(), 0, null_mut());
        let code = vexil_variation_detail(
            client,
            key.as_ptr().cast(),
            key.len(),
            alice,
            kind,
            "true".as_ptr().cast(),
            4,
            &mut out,
            &mut len,
            &mut error,
        );
        if code == VexilCode::Ok {
            let detail: Value = serde_json::from_str(&take(out, len)).unwrap();
            Ok((detail["value"].clone(), detail["reason"].clone()))
        } else {
            Err((code, message(error)))
        }
    };
    let (value, reason) = evaluate(b"checkout", 0).unwrap();
    assert_eq!(
        (value, reason["kind"].clone()),
        (json!(true), json!("FALLTHROUGH"))
    );
    for key in ["caf\u{e9}-r\u{e9}duit", "checkout\u{1f600}"] {
        let (value, reason) = evaluate(key.as_bytes(), 0).unwrap();
        assert_eq!(value, json!(true), "{key}: the default");
        assert_eq!(reason["error_kind"], json!("FLAG_NOT_FOUND"), "{key}");
    }
    assert_eq!(
        evaluate(b"checkout-and-more\xff", 0),
        Err((
            VexilCode::InvalidUtf8,
            "flag_key: not valid UTF-8 at byte 17".to_owned()
        ))
    );
    assert_eq!(
        evaluate(b"caf\xc3", 0),
        Err((
            VexilCode::InvalidUtf8,
            "flag_key: not valid UTF-8 at byte 3".to_owned()
        ))
    );
    vexil_context_free(alice);
    assert_eq!(vexil_client_free(client, null_mut()), VexilCode::Ok);
}

#[test]
fn invalid_utf8_json_and_contexts_are_refused() {
    let (client, _dir) = offline_client(flags());
    let alice = context(r#"{"kind":"user","key":"alice"}"#);
    let mut error = null_mut();
    let mut value = false;

    let bad = b"chec\xffkout";
    let code = vexil_bool_variation(
        client,
        bad.as_ptr().cast(),
        bad.len(),
        alice,
        false,
        &mut value,
        &mut error,
    );
    assert_eq!(code, VexilCode::InvalidUtf8);
    assert_eq!(message(error), "flag_key: not valid UTF-8 at byte 4");

    let mut ctx = null_mut();
    let text = "{not json";
    assert_eq!(
        vexil_context_new(text.as_ptr().cast(), text.len(), &mut ctx, &mut error),
        VexilCode::InvalidJson
    );
    assert!(message(error).starts_with("json: "));
    let text = r#"{"kind":"user"}"#;
    assert_eq!(
        vexil_context_new(text.as_ptr().cast(), text.len(), &mut ctx, &mut error),
        VexilCode::InvalidContext
    );
    assert!(message(error).contains("key"));
    assert!(ctx.is_null());
    assert_eq!(
        vexil_context_new(bad.as_ptr().cast(), bad.len(), &mut ctx, &mut error),
        VexilCode::InvalidUtf8
    );
    message(error);

    let (mut out, mut len) = (null_mut(), 0);
    let key = "checkout";
    let default = "[1,";
    let code = vexil_variation_detail(
        client,
        key.as_ptr().cast(),
        key.len(),
        alice,
        0,
        default.as_ptr().cast(),
        default.len(),
        &mut out,
        &mut len,
        &mut error,
    );
    assert_eq!(code, VexilCode::InvalidJson);
    assert!(message(error).starts_with("default_json: "));
    let code = vexil_variation_detail(
        client,
        key.as_ptr().cast(),
        key.len(),
        alice,
        7,
        "1".as_ptr().cast(),
        1,
        &mut out,
        &mut len,
        &mut error,
    );
    assert_eq!(code, VexilCode::InvalidArgument);
    assert_eq!(message(error), "kind: 7 is not a VexilValueKind (0 to 3)");

    let name = "";
    assert_eq!(
        vexil_track(
            client,
            name.as_ptr().cast(),
            0,
            alice,
            false,
            0.0,
            &mut error
        ),
        VexilCode::InvalidArgument
    );
    assert_eq!(message(error), "name: must not be empty");

    // The context round-trips through its canonical JSON.
    assert_eq!(
        vexil_context_to_json(alice, &mut out, &mut len, null_mut()),
        VexilCode::Ok
    );
    assert_eq!(
        serde_json::from_str::<Value>(&take(out, len)).unwrap(),
        json!({"kind": "user", "key": "alice"})
    );

    vexil_client_free(client, null_mut());
    vexil_context_free(alice);
}

fn new_client(key: &str, options: &str) -> (VexilCode, String) {
    let mut client = null_mut();
    let mut error = null_mut();
    let code = vexil_client_new(
        key.as_ptr().cast(),
        key.len(),
        options.as_ptr().cast(),
        options.len(),
        &mut client,
        &mut error,
    );
    if code == VexilCode::Ok {
        assert_eq!(vexil_client_free(client, null_mut()), VexilCode::Ok);
        return (code, String::new());
    }
    assert!(client.is_null());
    (code, message(error))
}

#[test]
fn client_options_are_checked_by_field() {
    assert_eq!(
        new_client("nope", ""),
        (
            VexilCode::InvalidKey,
            "sdk_key: the SDK key must start with vxl-server-, vxl-client- or vxl-mobile-".into()
        )
    );
    let (code, text) = new_client("vxl-server-x", r#"{"offline": true, "endpont": "x"}"#);
    assert_eq!(code, VexilCode::InvalidOptions);
    assert!(text.contains("endpont"), "{text}");
    let (code, text) = new_client(
        "vxl-server-x",
        r#"{"offline": true, "events": {"flush_interval_ms": "soon"}}"#,
    );
    assert_eq!(code, VexilCode::InvalidOptions);
    assert!(
        text.starts_with("options_json.events.flush_interval_ms: "),
        "{text}"
    );
    let (code, text) = new_client(
        "vxl-server-x",
        r#"{"offline": true, "events": {"batch_size": 0}}"#,
    );
    assert_eq!(
        (code, text.as_str()),
        (
            VexilCode::InvalidOptions,
            "options_json.events.batch_size: must be at least 1"
        )
    );
    let (code, text) = new_client("vxl-server-x", r#"{"offline": true,"#);
    assert_eq!(code, VexilCode::InvalidJson);
    assert!(text.starts_with("options_json: "), "{text}");
    let (code, text) = new_client(
        "vxl-mobile-x",
        r#"{"offline": true, "context": {"kind": "user", "key": ""}}"#,
    );
    assert_eq!(code, VexilCode::InvalidContext);
    assert!(text.starts_with("options_json.context: "), "{text}");
    let (code, _) = new_client("vxl-server-x", r#"{"endpoint": "not a url"}"#);
    assert_eq!(code, VexilCode::InvalidEndpoint);
    assert_eq!(
        new_client("vxl-server-x", r#"{"offline": true}"#).0,
        VexilCode::Ok
    );
    assert_eq!(
        new_client("vxl-server-x", "").0,
        VexilCode::Ok,
        "empty options: the defaults"
    );
}

#[test]
fn version_is_a_static_string() {
    let version = unsafe { CStr::from_ptr(vexil_version()) };
    assert_eq!(version.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}

/// What the log callback of `log_test_client` received.
type Logged = std::sync::Mutex<Vec<(i32, String)>>;

unsafe extern "C" fn collect_log(
    user_data: *mut std::ffi::c_void,
    level: i32,
    message: *const c_char,
    len: usize,
) {
    let logged = unsafe { &*(user_data as *const Logged) };
    let bytes = unsafe { std::slice::from_raw_parts(message.cast::<u8>(), len) };
    logged
        .lock()
        .unwrap()
        .push((level, String::from_utf8(bytes.to_vec()).unwrap()));
}

/// Creates and frees an offline client whose bootstrap file is unreadable JSON, logging up
/// to `max_level`; returns what was logged.
fn log_test_client(max_level: i32) -> (VexilCode, Vec<(i32, String)>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ruleset.json");
    std::fs::write(&path, "{ not json").unwrap();
    let options = json!({"offline": true, "bootstrap": path}).to_string();
    let key = "vxl-server-test";
    let logged = Box::new(Logged::default());
    let mut client = null_mut();
    let code = vexil_client_new_with_log(
        key.as_ptr().cast(),
        key.len(),
        options.as_ptr().cast(),
        options.len(),
        Some(collect_log),
        max_level,
        (&*logged as *const Logged).cast_mut().cast(),
        &mut client,
        null_mut(),
    );
    if code == VexilCode::Ok {
        assert_eq!(vexil_client_free(client, null_mut()), VexilCode::Ok);
    }
    (code, logged.into_inner().unwrap())
}

#[test]
fn log_messages_reach_the_callback_at_the_levels_asked() {
    let (code, logged) = log_test_client(2);
    assert_eq!(code, VexilCode::Ok);
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!(logged[0].0, 2, "a warning");
    assert!(
        logged[0].1.starts_with("ignoring the bootstrap file"),
        "{logged:?}"
    );
    let (code, logged) = log_test_client(1);
    assert_eq!(code, VexilCode::Ok);
    assert!(logged.is_empty(), "errors only: {logged:?}");
    let (code, logged) = log_test_client(0);
    assert_eq!(code, VexilCode::Ok);
    assert!(logged.is_empty(), "nothing: {logged:?}");

    let key = "vxl-server-test";
    let mut client = null_mut();
    let mut error = null_mut();
    let code = vexil_client_new_with_log(
        key.as_ptr().cast(),
        key.len(),
        null(),
        0,
        Some(collect_log),
        6,
        null_mut(),
        &mut client,
        &mut error,
    );
    assert_eq!(code, VexilCode::InvalidArgument);
    assert_eq!(
        message(error),
        "log_max_level: 6 is not a level from 0 to 5"
    );
    assert!(client.is_null());
}

#[test]
fn a_client_on_test_data_sees_each_change() {
    let mut data = null_mut();
    assert_eq!(vexil_test_data_new(&mut data, null_mut()), VexilCode::Ok);
    let (key, value) = ("checkout", "true");
    let set = |value: &str| {
        vexil_test_data_set_value(
            data,
            key.as_ptr().cast(),
            key.len(),
            value.as_ptr().cast(),
            value.len(),
            null_mut(),
        )
    };
    assert_eq!(set(value), VexilCode::Ok);
    let sdk_key = "vxl-server-test";
    let mut client = null_mut();
    assert_eq!(
        vexil_client_new_with_test_data(
            sdk_key.as_ptr().cast(),
            sdk_key.len(),
            null(),
            0,
            data,
            &mut client,
            null_mut()
        ),
        VexilCode::Ok
    );
    let alice = context(r#"{"kind":"user","key":"alice"}"#);
    let variation = || {
        let mut on = false;
        let code = vexil_bool_variation(
            client,
            key.as_ptr().cast(),
            key.len(),
            alice,
            false,
            &mut on,
            null_mut(),
        );
        assert_eq!(code, VexilCode::Ok);
        on
    };
    assert!(variation());
    assert_eq!(set("false"), VexilCode::Ok);
    assert!(!variation());

    let bad = r#"{"key": "checkout", "kind": "bool", "variations": [true], "on": true, "fallthrough": {"variation": 3}}"#;
    let mut error = null_mut();
    assert_eq!(
        vexil_test_data_update(data, false, bad.as_ptr().cast(), bad.len(), &mut error),
        VexilCode::InvalidArgument
    );
    assert!(message(error).contains("fallthrough"));
    assert!(!variation(), "nothing changed");

    let mut removed = false;
    assert_eq!(
        vexil_test_data_remove(
            data,
            false,
            key.as_ptr().cast(),
            key.len(),
            &mut removed,
            null_mut()
        ),
        VexilCode::Ok
    );
    assert!(removed);
    vexil_test_data_free(data);
    assert!(!variation(), "the default, the flag gone");
    vexil_client_free(client, null_mut());
    vexil_context_free(alice);
}

unsafe extern "C" fn send_result(user_data: *mut std::ffi::c_void, result: i32) {
    let sender = unsafe { Box::from_raw(user_data as *mut std::sync::mpsc::Sender<i32>) };
    let _ = sender.send(result);
}

#[test]
fn waits_without_a_thread_call_back_once() {
    // Nothing listens on port 9: initialization ends at the timeout, still INITIALIZING.
    let key = "vxl-server-test";
    let options = r#"{"endpoint": "http://127.0.0.1:9", "events": {"enabled": false}}"#;
    let mut client = null_mut();
    assert_eq!(
        vexil_client_new(
            key.as_ptr().cast(),
            key.len(),
            options.as_ptr().cast(),
            options.len(),
            &mut client,
            null_mut()
        ),
        VexilCode::Ok
    );
    let wait = std::time::Duration::from_secs(5);
    let (sender, results) = std::sync::mpsc::channel::<i32>();
    let user_data = Box::into_raw(Box::new(sender.clone())).cast();
    let code = vexil_client_when_initialized(client, 100, Some(send_result), user_data, null_mut());
    assert_eq!(code, VexilCode::Ok);
    assert_eq!(
        results.recv_timeout(wait).unwrap(),
        VexilStatus::Initializing as i32
    );
    // Events off: a flush has nothing to deliver, and answers at once.
    let user_data = Box::into_raw(Box::new(sender)).cast();
    assert_eq!(
        vexil_client_when_flushed(client, 100, Some(send_result), user_data, null_mut()),
        VexilCode::Ok
    );
    assert_eq!(results.recv_timeout(wait).unwrap(), 1);
    let mut error = null_mut();
    assert_eq!(
        vexil_client_when_flushed(client, 100, None, null_mut(), &mut error),
        VexilCode::NullArgument
    );
    assert!(message(error).contains("callback"));
    vexil_client_free(client, null_mut());
}
