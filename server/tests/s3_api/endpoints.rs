use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{Backend, TestServer, send, sign, xml_code};
use crate::on_both_backends;

async fn health_and_metrics_endpoints_answer(backend: Backend) {
    let t = TestServer::start(backend).await;
    let live = reqwest::get(format!("{}/health/live", t.endpoint()))
        .await
        .unwrap();
    assert_eq!(live.status().as_u16(), 200);
    let ready = reqwest::get(format!("{}/health/ready", t.endpoint()))
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    let s3 = t.root_client();
    s3.list_buckets().send().await.unwrap();
    // A 1 MiB PUT and GET show up in the byte counters of the connections.
    s3.create_bucket().bucket("traffic").send().await.unwrap();
    let body = vec![7u8; 1 << 20];
    s3.put_object()
        .bucket("traffic")
        .key("one-mib")
        .body(body.clone().into())
        .send()
        .await
        .unwrap();
    let got = s3
        .get_object()
        .bucket("traffic")
        .key("one-mib")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().len(),
        1 << 20
    );
    let metrics = reqwest::get(format!("{}/metrics", t.endpoint()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "coffer_network_received_bytes_total",
        "coffer_network_sent_bytes_total",
    ] {
        let bytes = coffer_testkit::metric(&t.endpoint(), name).await;
        assert!((1 << 20..2 << 20).contains(&bytes), "{name} {bytes}");
    }
    assert!(
        metrics.contains("coffer_http_requests_total{method=\"GET\",status=\"200\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("coffer_http_request_duration_seconds_bucket"),
        "{metrics}"
    );
    t.stop().await;
}

async fn requests_beyond_the_in_flight_limit_get_slow_down(backend: Backend) {
    let t = TestServer::start_with(backend, |c| c.max_in_flight = 1).await;
    t.root_client()
        .create_bucket()
        .bucket("busy")
        .send()
        .await
        .unwrap();
    let root = t.server.root_key().clone();
    // Hold the only slot with an upload whose body trickles in.
    let mut request = http::Request::put(format!("{}/busy/slow", t.endpoint()))
        .header("content-length", "10")
        .header("host", t.server.local_addr().to_string())
        .body(Vec::new())
        .unwrap();
    sign(&mut request, &root.id, &root.secret, true);
    let mut head = String::from("PUT /busy/slow HTTP/1.1\r\n");
    for (name, value) in request.headers() {
        head.push_str(&format!("{}: {}\r\n", name, value.to_str().unwrap()));
    }
    head.push_str("\r\n");
    let mut slow = tokio::net::TcpStream::connect(t.server.local_addr())
        .await
        .unwrap();
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(b"12345").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut probe = http::Request::get(format!("{}/busy", t.endpoint()))
        .body(Vec::new())
        .unwrap();
    sign(&mut probe, &root.id, &root.secret, false);
    let (status, _, body) = send(probe).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(xml_code(&body), "SlowDown");
    slow.write_all(b"67890").await.unwrap();
    let mut response = [0u8; 12];
    slow.read_exact(&mut response).await.unwrap();
    assert_eq!(
        &response, b"HTTP/1.1 200",
        "the held upload completes once its body is in"
    );
    let object = t
        .root_client()
        .get_object()
        .bucket("busy")
        .key("slow")
        .send()
        .await
        .unwrap();
    assert_eq!(
        object.body.collect().await.unwrap().into_bytes().as_ref(),
        b"1234567890"
    );
    t.stop().await;
}

on_both_backends!(
    health_and_metrics_endpoints_answer,
    requests_beyond_the_in_flight_limit_get_slow_down
);
