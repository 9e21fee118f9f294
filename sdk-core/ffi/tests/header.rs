//! The committed header is what cbindgen generates from the source: regenerating it must
//! change nothing. `VEXIL_UPDATE_HEADER=1 cargo test -p vexil-ffi --test header` rewrites it.

use std::path::Path;

#[test]
fn committed_header_is_current() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config =
        cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml parses");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("the header generates")
        .write(&mut generated);
    let generated = String::from_utf8(generated).expect("the header is UTF-8");
    let path = crate_dir.join("include/vexil.h");
    if std::env::var_os("VEXIL_UPDATE_HEADER").is_some() {
        std::fs::write(&path, &generated).expect("the header is writable");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale: regenerate it with \
         `VEXIL_UPDATE_HEADER=1 cargo test -p vexil-ffi --test header`",
        path.display()
    );
}

/// A Go module cannot reach outside its folder, so `sdk-go/include/vexil.h` links to the
/// header, and the release copies the file itself into the module.
#[test]
fn the_go_module_sees_the_same_header() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |path: &Path| std::fs::read_to_string(path).expect("the header is readable");
    assert_eq!(
        read(&crate_dir.join("../../sdk-go/include/vexil.h")),
        read(&crate_dir.join("include/vexil.h")),
    );
}
