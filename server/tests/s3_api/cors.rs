use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CorsConfiguration, CorsRule};

use crate::common::{Backend, TestServer, code, xml_code};
use crate::on_both_backends;

type Client = aws_sdk_s3::Client;

fn rule(origin: &str, methods: &[&str], headers: &[&str]) -> CorsRule {
    let mut builder = CorsRule::builder()
        .allowed_origins(origin)
        .expose_headers("ETag")
        .max_age_seconds(600);
    for m in methods {
        builder = builder.allowed_methods(*m);
    }
    for h in headers {
        builder = builder.allowed_headers(*h);
    }
    builder.build().unwrap()
}

async fn put_rules(s3: &Client, bucket: &str, rules: Vec<CorsRule>) {
    s3.put_bucket_cors()
        .bucket(bucket)
        .cors_configuration(
            CorsConfiguration::builder()
                .set_cors_rules(Some(rules))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

async fn options(
    endpoint: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut request =
        reqwest::Client::new().request(reqwest::Method::OPTIONS, format!("{endpoint}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap_or_default())
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn cors_configuration_is_stored_validated_and_deleted(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("web").send().await.unwrap();
    assert_eq!(
        code(s3.get_bucket_cors().bucket("web").send().await),
        "NoSuchCORSConfiguration"
    );
    put_rules(
        &s3,
        "web",
        vec![
            rule("https://app.example.com", &["GET", "PUT"], &["*"]),
            rule("*", &["HEAD"], &[]),
        ],
    )
    .await;
    let got = s3.get_bucket_cors().bucket("web").send().await.unwrap();
    assert_eq!(got.cors_rules().len(), 2);
    let first = &got.cors_rules()[0];
    assert_eq!(first.allowed_origins(), ["https://app.example.com"]);
    assert_eq!(first.allowed_methods(), ["GET", "PUT"]);
    assert_eq!(first.allowed_headers(), ["*"]);
    assert_eq!(first.expose_headers(), ["ETag"]);
    assert_eq!(first.max_age_seconds(), Some(600));
    let bad = s3
        .put_bucket_cors()
        .bucket("web")
        .cors_configuration(
            CorsConfiguration::builder()
                .cors_rules(rule("*", &["PATCH"], &[]))
                .build()
                .unwrap(),
        )
        .send()
        .await;
    assert_eq!(code(bad), "InvalidRequest");
    // The refused configuration did not replace the stored one.
    let kept = s3.get_bucket_cors().bucket("web").send().await.unwrap();
    assert_eq!(kept.cors_rules().len(), 2);
    s3.delete_bucket_cors().bucket("web").send().await.unwrap();
    assert_eq!(
        code(s3.get_bucket_cors().bucket("web").send().await),
        "NoSuchCORSConfiguration"
    );
    t.stop().await;
}

async fn preflight_is_answered_from_the_rules(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("web").send().await.unwrap();
    s3.create_bucket().bucket("closed").send().await.unwrap();
    put_rules(
        &s3,
        "web",
        vec![rule(
            "https://*.example.com",
            &["GET", "PUT"],
            &["content-type", "x-amz-*"],
        )],
    )
    .await;
    let endpoint = t.endpoint();
    let (status, headers, _) = options(
        &endpoint,
        "/web/photo.jpg",
        &[
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "PUT"),
            ("access-control-request-headers", "Content-Type, X-Amz-Date"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(
        header(&headers, "access-control-allow-methods"),
        Some("GET, PUT")
    );
    assert_eq!(
        header(&headers, "access-control-allow-headers"),
        Some("Content-Type, X-Amz-Date")
    );
    assert_eq!(header(&headers, "access-control-max-age"), Some("600"));
    assert_eq!(
        header(&headers, "access-control-expose-headers"),
        Some("ETag")
    );
    for refused in [
        // Wrong origin.
        [
            ("origin", "https://evil.example.org"),
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "content-type"),
        ],
        // Method not allowed.
        [
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "DELETE"),
            ("access-control-request-headers", "content-type"),
        ],
        // Header not allowed.
        [
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "authorization"),
        ],
    ] {
        let (status, headers, body) = options(&endpoint, "/web/photo.jpg", &refused).await;
        assert_eq!(status, 403, "{refused:?}");
        assert_eq!(xml_code(&body), "AccessForbidden");
        assert!(header(&headers, "access-control-allow-origin").is_none());
    }
    // A bucket without rules refuses every preflight.
    let (status, _, body) = options(
        &endpoint,
        "/closed/x",
        &[
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "GET"),
        ],
    )
    .await;
    assert_eq!((status, xml_code(&body)), (403, "AccessForbidden"));
    let (status, _, _) = options(
        &endpoint,
        "/web/x",
        &[("origin", "https://app.example.com")],
    )
    .await;
    assert_eq!(status, 400);
    t.stop().await;
}

async fn actual_requests_carry_cors_headers_for_matching_origins(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("web").send().await.unwrap();
    s3.put_object()
        .bucket("web")
        .key("page.html")
        .body(ByteStream::from_static(b"<p>hi</p>"))
        .send()
        .await
        .unwrap();
    put_rules(
        &s3,
        "web",
        vec![rule("https://app.example.com", &["GET"], &[])],
    )
    .await;
    let url = s3
        .get_object()
        .bucket("web")
        .key("page.html")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(300)).unwrap())
        .await
        .unwrap()
        .uri()
        .to_owned();
    let client = reqwest::Client::new();
    let allowed = client
        .get(&url)
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status().as_u16(), 200);
    let headers = allowed.headers().clone();
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(
        header(&headers, "access-control-expose-headers"),
        Some("ETag")
    );
    assert_eq!(allowed.text().await.unwrap(), "<p>hi</p>");
    // Another origin gets the object (S3 does not block) but no CORS headers, so
    // a browser keeps the response from the page.
    let other = client
        .get(&url)
        .header("origin", "https://evil.example.org")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status().as_u16(), 200);
    assert!(header(other.headers(), "access-control-allow-origin").is_none());
    t.stop().await;
}

/// With `--domain`, the bucket of `bucket.<domain>` requests is the one whose
/// rules apply — not the first path segment, which is part of the key there.
async fn virtual_hosted_requests_use_the_host_buckets_rules(backend: Backend) {
    let t = TestServer::start_with(backend, |c| c.domain = Some("s3.coffer.test".to_owned())).await;
    let s3 = t.root_client();
    for bucket in ["web", "closed"] {
        s3.create_bucket().bucket(bucket).send().await.unwrap();
    }
    put_rules(
        &s3,
        "web",
        vec![rule("https://app.example.com", &["GET", "PUT"], &["*"])],
    )
    .await;
    s3.put_object()
        .bucket("web")
        .key("page.html")
        .body(ByteStream::from_static(b"<p>hi</p>"))
        .send()
        .await
        .unwrap();
    let endpoint = t.endpoint();
    let preflight = |host: &'static str, path: &'static str| {
        let endpoint = endpoint.clone();
        async move {
            options(
                &endpoint,
                path,
                &[
                    ("host", host),
                    ("origin", "https://app.example.com"),
                    ("access-control-request-method", "PUT"),
                ],
            )
            .await
        }
    };
    let (status, headers, _) = preflight("web.s3.coffer.test", "/photo.jpg").await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some("https://app.example.com")
    );
    // `/web/...` on the `closed` bucket's host is the key `web/...` of `closed`,
    // which has no rules.
    let (status, _, body) = preflight("closed.s3.coffer.test", "/web/photo.jpg").await;
    assert_eq!((status, xml_code(&body)), (403, "AccessForbidden"));
    // The bare domain is path-style.
    let (status, _, _) = preflight("s3.coffer.test", "/web/photo.jpg").await;
    assert_eq!(status, 200);

    // An actual (signed) virtual-hosted GET gets the rule's headers.
    let root = t.server.root_key();
    let get = |origin: &'static str| {
        let mut request = http::Request::get(format!("{endpoint}/page.html"))
            .header("host", "web.s3.coffer.test")
            .header("origin", origin)
            .body(Vec::new())
            .unwrap();
        crate::common::sign(&mut request, &root.id, &root.secret, false);
        crate::common::send(request)
    };
    let (status, headers, body) = get("https://app.example.com").await;
    assert_eq!((status, body.as_str()), (200, "<p>hi</p>"));
    assert_eq!(
        headers
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("https://app.example.com")
    );
    let (status, headers, _) = get("https://evil.example.org").await;
    assert_eq!(status, 200);
    assert!(headers.get("access-control-allow-origin").is_none());
    t.stop().await;
}

on_both_backends!(
    cors_configuration_is_stored_validated_and_deleted,
    preflight_is_answered_from_the_rules,
    actual_requests_carry_cors_headers_for_matching_origins,
    virtual_hosted_requests_use_the_host_buckets_rules,
);
