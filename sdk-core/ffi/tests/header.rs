//! The committed header (and the Go module's copy) is what cbindgen generates from the
//! source: regenerating it must change nothing. `VEXIL_UPDATE_HEADER=1 cargo test -p vexil-ffi --test header` rewrites it.

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
    // The Go module carries a copy: a module cannot reach outside its folder.
    for path in [
        crate_dir.join("include/vexil.h"),
        crate_dir.join("../../sdk-go/include/vexil.h"),
    ] {
        if std::env::var_os("VEXIL_UPDATE_HEADER").is_some() {
            std::fs::write(&path, &generated).expect("the header is writable");
            continue;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} is stale: regenerate it with \
             `VEXIL_UPDATE_HEADER=1 cargo test -p vexil-ffi --test header`",
            path.display()
        );
    }
}
