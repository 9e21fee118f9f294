//! The client without a server: a corrupt cache, a bootstrap file, fully offline.

use std::time::Duration;

use serde_json::json;
use vexil_core::{Client, Config, Source, Status};
use vexil_engine::{Context, SingleContext};

fn user(key: &str) -> Context {
    Context::from(SingleContext::new("user", key).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_cache_is_ignored_and_a_bootstrap_file_serves_offline() {
    let dir = tempfile::tempdir().unwrap();
    let key = "vxl-server-0123456789abcdef";
    let cache_dir = dir.path().join("cache");
    std::fs::create_dir_all(&cache_dir).unwrap();
    // Garbage where the key's cache file is (named by the key's SHA-256).
    let cache_file = cache_dir.join(format!("vexil-{}.json", &sha_hex(key)[..16]));
    std::fs::write(&cache_file, b"{ not json").unwrap();
    let bootstrap = dir.path().join("flags.json");
    std::fs::write(
        &bootstrap,
        json!({"flags": [{"key": "banner", "kind": "string", "variations": ["a", "b"],
            "on": true, "fallthrough": {"variation": 1}}]})
        .to_string(),
    )
    .unwrap();
    let client = Client::new(
        Config::new(key)
            .with_offline(true)
            .with_cache_dir(&cache_dir)
            .with_bootstrap(&bootstrap),
    )
    .unwrap();
    assert_eq!(client.status(), Status::Offline);
    let detail = client.string_variation_detail("banner", &user("u"), "x");
    assert_eq!(detail.value, "b");
    assert_eq!(detail.source, Source::Bootstrap);
    assert!(
        client.flush(Duration::from_secs(1)),
        "offline: nothing to send"
    );
    client.close();

    // Fully offline without any file: defaults, with the reason.
    let bare = Client::new(Config::new(key).with_offline(true)).unwrap();
    let detail = bare.bool_variation_detail("banner", &user("u"), true);
    assert!(detail.value);
    assert_eq!(detail.source, Source::Defaults);
    assert!(matches!(
        Client::new(Config::new("not-a-key")),
        Err(vexil_core::Error::InvalidKey)
    ));
}

fn sha_hex(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}
