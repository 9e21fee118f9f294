//! Rough throughput of the storage against the admin-write and listing targets.
//!
//! `cargo run --release -p vexil-server --example storage_bench -- <database url>`
//! (a `sqlite:` url or a Postgres database that may be written to; it creates a project
//! named `bench-<time>`). Prints figures; asserts nothing.

use std::time::Instant;

use serde_json::json;
use vexil_server::storage::*;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "sqlite:bench.db".into());
    let storage = Storage::connect(&url).await?;
    let project = format!("bench-{}", now_millis());
    storage
        .create_project(
            "bench",
            &NewProject {
                key: project.clone(),
                ..NewProject::default()
            },
        )
        .await?;
    for env in ["dev", "prod"] {
        let new = NewEnvironment {
            key: env.into(),
            ..NewEnvironment::default()
        };
        storage.create_environment("bench", &project, &new).await?;
    }

    const FLAGS: usize = 10_000;
    let started = Instant::now();
    for i in 0..FLAGS {
        let flag = NewFlag {
            key: format!("flag-{i:05}"),
            kind: ValueKind::Bool,
            variations: vec![json!(true), json!(false)],
            name: String::new(),
            description: String::new(),
            tags: vec![format!("team-{}", i % 10)],
            client_side: false,
            off_variation: Some(1),
            fallthrough: Serve::variation(0),
        };
        storage.create_flag("bench", &project, &flag).await?;
    }
    println!("created {FLAGS} flags in {:.1?}", started.elapsed());

    // Sustained toggles from 8 concurrent writers on distinct flags of one environment.
    const WRITES: usize = 2_000;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..8 {
        let (storage, project) = (storage.clone(), project.clone());
        tasks.push(tokio::spawn(async move {
            for n in 0..WRITES / 8 {
                let key = format!("flag-{:05}", w * (WRITES / 8) + n);
                storage
                    .toggle_flag("bench", &project, "dev", &key, 1, true)
                    .await?;
            }
            Ok::<_, StorageError>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{WRITES} flag updates in {secs:.2}s: {:.0}/s",
        WRITES as f64 / secs
    );

    let started = Instant::now();
    let mut page = PageRequest::first(500);
    let mut pages = 0;
    loop {
        let got = storage
            .list_flags(&project, &FlagFilter::default(), &page)
            .await?;
        pages += 1;
        match got.next_cursor {
            Some(cursor) => page.cursor = Some(cursor),
            None => break,
        }
    }
    let per_page = started.elapsed() / pages;
    println!("listed {pages} pages of 500 flags: {per_page:.1?} a page");

    let started = Instant::now();
    let ruleset = storage.load_ruleset(&project, "dev").await?;
    println!(
        "loaded a ruleset of {} flags in {:.1?}",
        ruleset.flags.len(),
        started.elapsed()
    );
    Ok(())
}
