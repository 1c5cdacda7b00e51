//! coffer-bench against a real Coffer server in-process: it signs correctly (no
//! errors with the right key, SignatureDoesNotMatch counted with a wrong one) and
//! counts what it did.

use std::time::Duration;

use coffer_bench::workload::{Workload, WorkloadConfig, run};
use coffer_server::serve::{ServeConfig, start};

fn config(workload: Workload, ops: u64) -> WorkloadConfig {
    WorkloadConfig {
        workload,
        bucket: "bench".to_owned(),
        prefix: "t/".to_owned(),
        object_size: 4096,
        concurrency: 4,
        duration: Duration::from_secs(60),
        max_ops: Some(ops),
        objects: 20,
        list_delimiter: true,
        part_size: 5 << 20,
        progress: false,
        prefilled: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workloads_run_signed_against_coffer() {
    let dir = coffer_testkit::temp_dir("bench");
    let mut serve = ServeConfig::new(&dir);
    serve.listen = "127.0.0.1:0".parse().unwrap();
    let server = start(serve).await.unwrap();
    let root = server.root_key().clone();
    let s3 = coffer_bench::client(&server.endpoint(), &root.id, &root.secret, "us-east-1");

    let put = run(s3.clone(), config(Workload::Put, 40)).await.unwrap();
    let op = &put.operations[0];
    assert_eq!(op.operation, "PUT");
    assert!((40..=44).contains(&op.ok), "{}", put.render());
    assert_eq!(put.total_errors(), 0);
    assert!(op.p50_ms > 0.0 && op.p50_ms <= op.p99_ms && op.p99_ms <= op.max_ms);

    let get = run(s3.clone(), config(Workload::Get, 30)).await.unwrap();
    let op = &get.operations[0];
    assert_eq!(get.total_errors(), 0, "{}", get.render());
    let expected_mib = op.ok as f64 * 4096.0 / (1024.0 * 1024.0) / get.elapsed_secs;
    assert!(
        (op.mib_per_sec - expected_mib).abs() < 1e-6,
        "bytes are counted"
    );

    let list = run(s3.clone(), config(Workload::List, 10)).await.unwrap();
    assert_eq!(list.total_errors(), 0);
    let mixed = run(s3.clone(), config(Workload::Mixed, 100)).await.unwrap();
    assert_eq!(mixed.total_errors(), 0, "{}", mixed.render());
    assert!(mixed.operations.len() >= 3, "{}", mixed.render());

    let wrong = coffer_bench::client(&server.endpoint(), &root.id, "wrong-secret", "us-east-1");
    let mut bad = config(Workload::Put, 5);
    bad.bucket = "bench".to_owned();
    let refused = run(wrong, bad).await.unwrap();
    assert_eq!(refused.operations[0].ok, 0);
    assert!(
        refused.operations[0]
            .errors
            .contains_key("SignatureDoesNotMatch"),
        "{}",
        refused.render()
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_baseline_serves_the_same_client() {
    let (addr, handle) = coffer_bench::baseline::start_http_baseline(1000)
        .await
        .unwrap();
    let s3 = coffer_bench::client(&format!("http://{addr}"), "x", "y", "us-east-1");
    let report = run(s3, config(Workload::Mixed, 50)).await.unwrap();
    assert_eq!(report.total_errors(), 0, "{}", report.render());
    handle.abort();
}
