//! Crash consistency, proven on a real `coffer-server` process: writers PUT
//! (inline, file-backed, encrypted), overwrite, copy, complete multipart uploads
//! and DELETE in a versioned and an unversioned bucket (see `workload/`); the
//! server is killed with SIGKILL at a random moment, restarted on the same data,
//! and every key is checked — never a lost acknowledged write, never torn bytes,
//! listings equal to GETs. After each restart the volume holds no temp files and
//! the server logs no warning: nothing was lost, so nothing may alarm.
//! `COFFER_CRASH_ROUNDS` sets the rounds per backend (`e2e/crash.sh` runs many).

#[path = "support/process.rs"]
mod process;
mod workload;

use std::time::Duration;

use process::{ROOT_KEY, ROOT_SECRET, Server};
/// Object sizes: inline in the metadata store, one blob block, several.
const SIZES: &[usize] = &[0, 300, 40_000, 700_000, 3_000_000];

fn rounds() -> usize {
    std::env::var("COFFER_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3)
}

async fn kill_9_at_random_moments_loses_nothing(database_url: Option<String>) {
    let mut server = Server::new("crash", database_url);
    server.start().await;
    let s3 = workload::client(&server.endpoint(), ROOT_KEY, ROOT_SECRET);
    workload::create_buckets(&s3).await;
    let history = workload::History::default();
    let mut checked = 0;
    for round in 0..rounds() {
        let writers = history.start(&s3, 6, SIZES);
        let at = Duration::from_millis(500 + rand::random::<u64>() % 2500);
        tokio::time::sleep(at).await;
        server.kill9();
        writers.stop().await;
        server.start().await;
        checked = history.verify(&s3).await;
        let temp = server.files_in("tmp");
        assert!(
            temp.is_empty(),
            "round {round}: temp files after restart: {temp:?}"
        );
        // Background work runs right after a start (inventory, collection).
        tokio::time::sleep(Duration::from_secs(2)).await;
        let warnings = server.warnings();
        assert!(
            warnings.is_empty(),
            "round {round}: a restart after a crash that lost nothing logged:\n{}",
            warnings.join("\n")
        );
        let tally = history.tally().await;
        eprintln!(
            "crash round {round}: killed after {at:?}; {} acknowledged, {} failed so far",
            tally.ok, tally.failed
        );
    }
    let tally = history.tally().await;
    assert!(tally.ok > 0, "writes were acknowledged");
    eprintln!(
        "crash: {} rounds, {} writes acknowledged, {} failed, {checked} keys checked, lost 0",
        rounds(),
        tally.ok,
        tally.failed
    );
    server.remove();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_kill_9_at_random_moments_loses_nothing() {
    kill_9_at_random_moments_loses_nothing(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_kill_9_at_random_moments_loses_nothing() {
    kill_9_at_random_moments_loses_nothing(Some(coffer_testkit::postgres_url().await)).await;
}
