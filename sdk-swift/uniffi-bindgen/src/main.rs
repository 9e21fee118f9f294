//! `uniffi-bindgen generate --library <cdylib> --language swift --out-dir <dir>`: the Swift
//! bindings of vexil-uniffi, generated from the built library by the same uniffi version.

fn main() {
    uniffi::uniffi_bindgen_main()
}
