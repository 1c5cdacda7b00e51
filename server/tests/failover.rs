//! Metadata failover under load: a Coffer server on a Postgres primary with a
//! synchronous standby, reached through a Service-like address (as CloudNativePG's
//! `-rw`). Clients PUT, overwrite, copy, complete multipart uploads and DELETE
//! (see `workload/`) while the primary is killed with
//! SIGKILL, the address moves to the standby and the standby is promoted. Every write that
//! was acknowledged must be there, byte for byte; a write that failed may or may
//! not have happened but is never half-visible; errors during the outage are
//! retryable 503s; `/health/ready` is false while no primary takes writes; the
//! server recovers by itself. The client never retries, so no failure is hidden.

mod workload;

use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer_server::cluster::ClusterConfig;
use coffer_server::serve::{RunningServer, ServeConfig, start};
use coffer_testkit::replicated::{ReplicatedPostgres, RwService};

const ROOT_KEY: &str = "ROOTKEYFORTESTS";
const ROOT_SECRET: &str = "root-secret-for-tests";
/// Object sizes: inline in the metadata store, one blob block, several.
const SIZES: &[usize] = &[0, 300, 40_000, 700_000, 2_500_000];

async fn ready_status(endpoint: &str) -> u16 {
    match reqwest::Client::new()
        .get(format!("{endpoint}/health/ready"))
        .timeout(Duration::from_secs(15))
        .send()
        .await
    {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

/// Polls `/health/ready` until it answers `want`; returns how long that took.
async fn wait_ready(endpoint: &str, want: u16, within: Duration) -> Duration {
    let started = Instant::now();
    while started.elapsed() < within {
        if ready_status(endpoint).await == want {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("/health/ready did not answer {want} within {within:?}");
}

/// Servers on one metadata store through `rw`: one alone, or a storage
/// cluster of several (each object's data on every node).
async fn start_servers(count: usize, rw: &RwService) -> Vec<(RunningServer, std::path::PathBuf)> {
    let mut servers = Vec::new();
    for index in 0..count {
        let data_dir = coffer_testkit::temp_dir("failover");
        let mut config = ServeConfig::new(&data_dir);
        config.listen = "127.0.0.1:0".parse().expect("addr");
        config.database_url = Some(format!(
            "postgres://postgres@127.0.0.1:{}/postgres",
            rw.port()
        ));
        config.root_credentials = Some((ROOT_KEY.to_owned(), ROOT_SECRET.to_owned()));
        if count > 1 {
            config.cluster = ClusterConfig::single(format!("n{index}"), "");
            config.cluster.secret = Some("failover-cluster-secret".to_owned());
            config.cluster.replicas = count;
            config.cluster.heal_interval = Duration::from_secs(1);
            // One master key per cluster (each node would otherwise make its own).
            config.master_key = Some(
                coffer_server::crypto::Key::from_base64(
                    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
                )
                .expect("key"),
            );
        }
        servers.push((start(config).await.expect("server starts"), data_dir));
    }
    servers
}

/// Polls every server's `/health/ready` until all answer `want`.
async fn wait_all_ready(endpoints: &[String], want: u16, within: Duration) -> Duration {
    let started = Instant::now();
    for endpoint in endpoints {
        let left = within.saturating_sub(started.elapsed());
        wait_ready(endpoint, want, left).await;
    }
    started.elapsed()
}

async fn a_metadata_failover_loses_no_acknowledged_write(nodes: usize) {
    let pg = tokio::task::spawn_blocking(ReplicatedPostgres::start)
        .await
        .expect("replicated postgres");
    let rw = RwService::start(pg.primary_port()).await;
    let servers = start_servers(nodes, &rw).await;
    let endpoints: Vec<String> = servers.iter().map(|(s, _)| s.endpoint()).collect();
    // Writers spread over the nodes; checks read through another node.
    let clients: Vec<_> = endpoints
        .iter()
        .map(|e| workload::client(e, ROOT_KEY, ROOT_SECRET))
        .collect();
    workload::create_buckets(&clients[0]).await;
    let history = workload::History::default();
    let writers = history.start_on(&clients, 6, SIZES);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        history.tally().await.ok > 0,
        "writes succeed before the failover"
    );

    // The primary dies; no address takes writes until the standby is promoted.
    let killed_at = Instant::now();
    let pg = Arc::new(pg);
    let primary = pg.clone();
    tokio::task::spawn_blocking(move || primary.kill_primary())
        .await
        .expect("kill");
    let not_ready_after = wait_all_ready(&endpoints, 503, Duration::from_secs(30)).await;
    // The address reaches the standby before it is promoted (a Service whose
    // endpoints moved early): it answers queries but refuses writes, so the
    // servers must stay not ready and answer writes with 503, not 500.
    rw.retarget(pg.standby_port());
    tokio::time::sleep(Duration::from_secs(1)).await;
    for endpoint in &endpoints {
        assert_eq!(
            ready_status(endpoint).await,
            503,
            "a standby in recovery is not ready"
        );
    }
    let standby = pg.clone();
    tokio::task::spawn_blocking(move || standby.promote_standby())
        .await
        .expect("promote");
    let ready_again_after = wait_all_ready(&endpoints, 200, Duration::from_secs(60)).await;
    let ok_at_promotion = history.tally().await.ok;
    // Keep writing on the new primary for a while.
    let deadline = Instant::now() + Duration::from_secs(30);
    while history.tally().await.ok < ok_at_promotion + 30 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    writers.stop().await;
    let outage = killed_at.elapsed();

    let tally = history.tally().await;
    eprintln!(
        "failover ({nodes} node(s)): {} writes acknowledged, {} failed (slowest failure {:?}), \
         not ready {not_ready_after:?} after the kill, ready {ready_again_after:?} after promotion",
        tally.ok, tally.failed, tally.slowest_failure
    );
    assert!(
        tally.ok >= ok_at_promotion + 30,
        "the servers write again on the new primary without a restart"
    );
    assert!(
        tally.not_retryable.is_empty(),
        "every failure is a retryable 503: {:?}",
        tally.not_retryable
    );
    assert!(
        tally.slowest_failure < Duration::from_secs(15),
        "failures are fast: {:?}",
        tally.slowest_failure
    );
    // Every acknowledged write is there, byte for byte; a failed one may have
    // happened, whole, or not at all; listings agree with GETs.
    let checked = history.verify(&clients[clients.len() - 1]).await;
    eprintln!("failover ({nodes} node(s)): {checked} keys checked, outage window {outage:?}");
    for (server, data_dir) in servers {
        server.shutdown().await;
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    drop(rw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_metadata_failover_loses_no_acknowledged_write_on_one_node() {
    a_metadata_failover_loses_no_acknowledged_write(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_metadata_failover_loses_no_acknowledged_write_in_a_three_node_cluster() {
    a_metadata_failover_loses_no_acknowledged_write(3).await;
}
