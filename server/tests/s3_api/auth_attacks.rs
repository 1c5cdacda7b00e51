//! The authentication negative suite: each test replays an attack a review found
//! against a running server (captured SigV2 requests replayed late or re-aimed,
//! POST forms that repeat a field, peer requests replayed in another letter case
//! or with another body, a copy that reads one version's tags for another) and
//! checks that it is refused and changed nothing. Requests are built and signed
//! by hand, as an attacker would.

use aws_sdk_s3::types::{BucketVersioningStatus, ObjectOwnership, Tag, Tagging};
use base64::Engine as _;
use hmac::Mac as _;
use serde_json::json;

use crate::common::{Backend, TestServer, sign, signed_policy, xml_code};

const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The SigV2 sub-resources a signer puts into the canonical resource.
const V2_SUB_RESOURCES: &[&str] = &[
    "acl",
    "delete",
    "lifecycle",
    "location",
    "logging",
    "notification",
    "partNumber",
    "policy",
    "requestPayment",
    "tagging",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "website",
];

/// A SigV2 signature over `string_to_sign`, as legacy clients compute it.
fn v2_signature(secret: &str, string_to_sign: &str) -> String {
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(string_to_sign.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

/// The canonical resource of `path_and_query`: the path plus the signed
/// sub-resources, sorted.
fn canonical_resource(path_and_query: &str) -> String {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let mut signed: Vec<&str> = query
        .split('&')
        .filter(|p| {
            let name = p.split('=').next().unwrap_or_default();
            V2_SUB_RESOURCES.contains(&name)
        })
        .collect();
    signed.sort_unstable();
    if signed.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", signed.join("&"))
    }
}

/// Sends a SigV2 header-signed request with the given `Date` (and extra
/// headers, `x-amz-*` ones signed).
async fn send_v2(
    t: &TestServer,
    method: &str,
    path_and_query: &str,
    date: Option<&str>,
    extra: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    send_v2_signed_as(t, method, path_and_query, path_and_query, date, extra, body).await
}

/// Sends `sent` with the SigV2 header signature of `signed` (a captured request
/// re-aimed by editing its query).
async fn send_v2_signed_as(
    t: &TestServer,
    method: &str,
    signed: &str,
    sent: &str,
    date: Option<&str>,
    extra: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let root = t.server.root_key();
    let mut amz: Vec<String> = extra
        .iter()
        .filter(|(n, _)| n.starts_with("x-amz-"))
        .map(|(n, v)| format!("{n}:{v}\n"))
        .collect();
    amz.sort();
    let signed_date = if extra.iter().any(|(n, _)| *n == "x-amz-date") {
        ""
    } else {
        date.unwrap_or_default()
    };
    let string_to_sign = format!(
        "{method}\n\n\n{signed_date}\n{}{}",
        amz.concat(),
        canonical_resource(signed)
    );
    let signature = v2_signature(&root.secret, &string_to_sign);
    let client = reqwest::Client::new();
    let mut request = client
        .request(method.parse().unwrap(), format!("{}{sent}", t.endpoint()))
        .header("authorization", format!("AWS {}:{signature}", root.id))
        .body(body.to_vec());
    if let Some(date) = date {
        request = request.header("date", date);
    }
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// A SigV2 presigned URL for `path_and_query`, valid until `expires` (unix time).
fn presign_v2(t: &TestServer, method: &str, path_and_query: &str, expires: i64) -> String {
    let root = t.server.root_key();
    let string_to_sign = format!(
        "{method}\n\n\n{expires}\n{}",
        canonical_resource(path_and_query)
    );
    let signature = v2_signature(&root.secret, &string_to_sign);
    let sep = if path_and_query.contains('?') {
        '&'
    } else {
        '?'
    };
    format!(
        "{}{path_and_query}{sep}AWSAccessKeyId={}&Expires={expires}&Signature={}",
        t.endpoint(),
        root.id,
        urlencoding::encode(&signature)
    )
}

fn http_date(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc2822)
        .unwrap()
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

async fn object_body(t: &TestServer, bucket: &str, key: &str) -> Option<Vec<u8>> {
    let got = t
        .root_client()
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .ok()?;
    Some(got.body.collect().await.unwrap().into_bytes().to_vec())
}

async fn bucket_with_object(t: &TestServer, bucket: &str, key: &str, body: &[u8]) {
    let s3 = t.root_client();
    s3.create_bucket().bucket(bucket).send().await.unwrap();
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(body.to_vec().into())
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigv2_header_requests_outside_the_clock_skew_are_refused() {
    let t = TestServer::start(Backend::Sqlite).await;
    bucket_with_object(&t, "sig-v2", "k", b"original").await;
    let fresh = http_date(now());
    let (status, body) = send_v2(&t, "PUT", "/sig-v2/k", Some(&fresh), &[], b"fresh").await;
    assert_eq!(status, 200, "a current SigV2 request works: {body}");
    assert_eq!(object_body(&t, "sig-v2", "k").await.unwrap(), b"fresh");

    for (date, expected) in [
        ("Mon, 01 Jan 2001 00:00:00 GMT", "RequestTimeTooSkewed"),
        ("Fri, 01 Jan 2100 00:00:00 +0000", "RequestTimeTooSkewed"),
        (
            &http_date(now() - time::Duration::minutes(20)),
            "RequestTimeTooSkewed",
        ),
        (
            &http_date(now() + time::Duration::minutes(20)),
            "RequestTimeTooSkewed",
        ),
        ("whenever", "AccessDenied"),
    ] {
        let (status, body) = send_v2(&t, "PUT", "/sig-v2/k", Some(date), &[], b"replayed").await;
        assert_eq!(status, 403, "Date {date}: {body}");
        assert_eq!(xml_code(&body), expected, "Date {date}: {body}");
    }
    // x-amz-date wins over Date, as on AWS: a fresh Date cannot rescue an old x-amz-date.
    let old = "Mon, 01 Jan 2001 00:00:00 GMT";
    let (status, body) = send_v2(
        &t,
        "PUT",
        "/sig-v2/k",
        Some(&fresh),
        &[("x-amz-date", old)],
        b"replayed",
    )
    .await;
    assert_eq!(
        (status, xml_code(&body)),
        (403, "RequestTimeTooSkewed"),
        "{body}"
    );
    let (status, body) = send_v2(&t, "PUT", "/sig-v2/k", None, &[], b"replayed").await;
    assert!(
        (400..500).contains(&status),
        "no date at all: {status} {body}"
    );
    assert_eq!(object_body(&t, "sig-v2", "k").await.unwrap(), b"fresh");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigv2_presigned_urls_live_at_most_seven_days() {
    let t = TestServer::start(Backend::Sqlite).await;
    bucket_with_object(&t, "sig-v2", "k", b"data").await;
    let soon = now().unix_timestamp() + 3600;
    let ok = reqwest::get(presign_v2(&t, "GET", "/sig-v2/k", soon))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let century = now().unix_timestamp() + 100 * 365 * 86_400;
    let far = reqwest::get(presign_v2(&t, "GET", "/sig-v2/k", century))
        .await
        .unwrap();
    assert_eq!(far.status(), 400);
    let body = far.text().await.unwrap();
    assert_eq!(
        xml_code(&body),
        "AuthorizationQueryParametersError",
        "{body}"
    );
    let eight_days = now().unix_timestamp() + 8 * 86_400;
    let far = reqwest::get(presign_v2(&t, "GET", "/sig-v2/k", eight_days))
        .await
        .unwrap();
    assert_eq!(far.status(), 400);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigv2_signatures_cannot_be_reaimed_at_another_operation() {
    let t = TestServer::start(Backend::Sqlite).await;
    bucket_with_object(&t, "sig-v2", "k", b"data").await;
    let s3 = t.root_client();
    let tag = |v: &str| {
        Tagging::builder()
            .tag_set(Tag::builder().key("class").value(v).build().unwrap())
            .build()
            .unwrap()
    };
    s3.put_object_tagging()
        .bucket("sig-v2")
        .key("k")
        .tagging(tag("secret"))
        .send()
        .await
        .unwrap();
    let expires = now().unix_timestamp() + 600;
    let get = presign_v2(&t, "GET", "/sig-v2/k", expires);
    let list = presign_v2(&t, "GET", "/sig-v2", expires);
    // The captured URLs work as signed...
    assert_eq!(reqwest::get(&get).await.unwrap().status(), 200);
    assert_eq!(reqwest::get(&list).await.unwrap().status(), 200);
    // ...and nothing appended to them reaches another operation.
    for extra in [
        "&acl&acl",
        "&tagging&tagging",
        "&tagging=&tagging",
        "&retention",
        "&legal-hold",
        "&attributes",
    ] {
        let response = reqwest::get(format!("{get}{extra}")).await.unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        assert!(
            (400..500).contains(&status),
            "GET + {extra}: {status} {body}"
        );
        assert!(!body.contains("<Tagging") && !body.contains("<AccessControlPolicy"));
    }
    for extra in [
        "&versions&versions",
        "&uploads&uploads",
        "&encryption",
        "&ownershipControls",
    ] {
        let response = reqwest::get(format!("{list}{extra}")).await.unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        assert!(
            (400..500).contains(&status),
            "bucket GET + {extra}: {status} {body}"
        );
        assert!(
            !body.contains("<ListVersionsResult") && !body.contains("<ListMultipartUploadsResult")
        );
    }
    // A presigned PUT cannot be turned into PutObjectTagging.
    let put = presign_v2(&t, "PUT", "/sig-v2/k", expires);
    let tagging =
        "<Tagging><TagSet><Tag><Key>class</Key><Value>public</Value></Tag></TagSet></Tagging>";
    let response = reqwest::Client::new()
        .put(format!("{put}&tagging&tagging"))
        .body(tagging)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    // Header-signed requests follow the same rule.
    let date = http_date(now());
    let (status, body) = send_v2(&t, "GET", "/sig-v2/k", Some(&date), &[], b"").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send_v2_signed_as(
        &t,
        "GET",
        "/sig-v2/k",
        "/sig-v2/k?acl&acl",
        Some(&date),
        &[],
        b"",
    )
    .await;
    assert_eq!((status, xml_code(&body)), (400, "InvalidRequest"), "{body}");
    let tags = s3
        .get_object_tagging()
        .bucket("sig-v2")
        .key("k")
        .send()
        .await
        .unwrap();
    assert_eq!(tags.tag_set()[0].value(), "secret");
    assert_eq!(object_body(&t, "sig-v2", "k").await.unwrap(), b"data");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigv2_can_be_refused_outright() {
    let t = TestServer::start_with(Backend::Sqlite, |c| c.allow_sigv2 = false).await;
    bucket_with_object(&t, "sig-v2", "k", b"data").await;
    let (status, body) = send_v2(&t, "GET", "/sig-v2/k", Some(&http_date(now())), &[], b"").await;
    assert_eq!((status, xml_code(&body)), (400, "InvalidRequest"), "{body}");
    let url = presign_v2(&t, "GET", "/sig-v2/k", now().unix_timestamp() + 60);
    assert_eq!(reqwest::get(url).await.unwrap().status(), 400);
    t.stop().await;
}

/// Sends a browser form with the given parts (name, value) before the file.
async fn post_form(endpoint: &str, bucket: &str, parts: &[(String, String)]) -> (u16, String) {
    let boundary = "----CofferAttackBoundary";
    let mut body = Vec::new();
    for (name, value) in parts {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f.txt\"\r\nContent-Type: text/plain\r\n\r\nsecret bytes\r\n--{boundary}--\r\n"
        )
        .as_bytes(),
    );
    let response = reqwest::Client::new()
        .post(format!("{endpoint}/{bucket}"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_forms_that_repeat_a_field_are_refused() {
    let t = TestServer::start(Backend::Sqlite).await;
    t.root_client()
        .create_bucket()
        .bucket("forms")
        .object_ownership(ObjectOwnership::ObjectWriter)
        .send()
        .await
        .unwrap();
    let root = t.server.root_key();
    let private_tags =
        "<Tagging><TagSet><Tag><Key>class</Key><Value>private</Value></Tag></TagSet></Tagging>";
    let public_tags =
        "<Tagging><TagSet><Tag><Key>class</Key><Value>public</Value></Tag></TagSet></Tagging>";
    let policy = signed_policy(
        vec![
            json!({"bucket": "forms"}),
            json!(["starts-with", "$key", "up/"]),
            json!({"acl": "private"}),
            json!({"tagging": private_tags}),
        ],
        time::Duration::minutes(5),
        &root.id,
        &root.secret,
    );
    let f = |n: &str, v: &str| (n.to_owned(), v.to_owned());
    let attempts: Vec<(&str, Vec<(String, String)>)> = vec![
        (
            "acl twice",
            vec![
                f("key", "up/a"),
                f("acl", "public-read"),
                f("acl", "private"),
                f("tagging", private_tags),
            ],
        ),
        (
            "ACL and acl",
            vec![
                f("key", "up/b"),
                f("ACL", "public-read"),
                f("acl", "private"),
                f("tagging", private_tags),
            ],
        ),
        (
            "tagging twice",
            vec![
                f("key", "up/c"),
                f("acl", "private"),
                f("tagging", public_tags),
                f("tagging", private_tags),
            ],
        ),
        (
            "key twice",
            vec![
                f("key", "up/d"),
                f("key", "elsewhere/d"),
                f("acl", "private"),
                f("tagging", private_tags),
            ],
        ),
    ];
    for (what, mut fields) in attempts {
        fields.extend(policy.clone());
        let (status, body) = post_form(&t.endpoint(), "forms", &fields).await;
        // s3s checks the key it will use against the policy first (a 403 for
        // `elsewhere/`); every other repeat is refused as such.
        let refused = (status == 400 && xml_code(&body) == "InvalidArgument")
            || (what == "key twice" && status == 403);
        assert!(refused, "{what}: {status} {body}");
    }
    let listed = t
        .root_client()
        .list_objects_v2()
        .bucket("forms")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.key_count(), Some(0), "nothing was stored");
    // The same form with each field once is accepted, and stays private.
    let mut fields = vec![
        f("key", "up/ok"),
        f("acl", "private"),
        f("tagging", private_tags),
    ];
    fields.extend(policy);
    let (status, body) = post_form(&t.endpoint(), "forms", &fields).await;
    assert_eq!(status, 204, "{body}");
    let anonymous = reqwest::get(format!("{}/forms/up/ok", t.endpoint()))
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 403);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_part_read_differently_by_two_parsers_is_not_applied() {
    let t = TestServer::start(Backend::Sqlite).await;
    t.root_client()
        .create_bucket()
        .bucket("forms")
        .object_ownership(ObjectOwnership::ObjectWriter)
        .send()
        .await
        .unwrap();
    let root = t.server.root_key();
    let mut fields = vec![("key".to_owned(), "up/x".to_owned())];
    fields.extend(signed_policy(
        vec![
            json!({"bucket": "forms"}),
            json!(["starts-with", "$key", "up/"]),
            json!({"acl": "private"}),
        ],
        time::Duration::minutes(5),
        &root.id,
        &root.secret,
    ));
    // A part with two Content-Disposition headers: one reader may take the
    // first name, another the last.
    let boundary = "----CofferAttackBoundary";
    let mut body = String::new();
    for (name, value) in &fields {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    body.push_str(&format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"acl\"\r\nContent-Disposition: form-data; name=\"x-ignore-a\"\r\n\r\npublic-read\r\n"
    ));
    body.push_str(&format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"x-ignore-b\"\r\nContent-Disposition: form-data; name=\"acl\"\r\n\r\nprivate\r\n"
    ));
    body.push_str(&format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f.txt\"\r\n\r\nsecret bytes\r\n--{boundary}--\r\n"
    ));
    let response = reqwest::Client::new()
        .post(format!("{}/forms", t.endpoint()))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let anonymous = reqwest::get(format!("{}/forms/up/x", t.endpoint()))
        .await
        .unwrap();
    assert_eq!(
        anonymous.status(),
        403,
        "the object must not be public (upload answered {status}: {text})"
    );
    t.stop().await;
}

/// A peer request signed with the cluster secret, as a node sends it.
fn peer_headers(secret: &str, method: &str, path: &str, nonce: &str) -> Vec<(String, String)> {
    let time = now().unix_timestamp();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{method}\n{path}\n{time}\nnode-x\n{nonce}").as_bytes());
    let signature = hex::encode(mac.finalize().into_bytes());
    vec![
        ("x-coffer-node".into(), "node-x".into()),
        ("x-coffer-time".into(), time.to_string()),
        ("x-coffer-nonce".into(), nonce.into()),
        ("x-coffer-signature".into(), signature),
    ]
}

async fn send_peer(
    endpoint: &str,
    method: reqwest::Method,
    path: &str,
    headers: &[(String, String)],
    body: Option<reqwest::Body>,
) -> (u16, String) {
    let mut request = reqwest::Client::new().request(method, format!("{endpoint}{path}"));
    for (name, value) in headers {
        request = request.header(name, value);
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

const CLUSTER_SECRET: &str = "cluster-secret-for-tests";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_peer_request_is_not_replayed_in_another_letter_case() {
    let t = TestServer::start_with(Backend::Sqlite, |c| {
        c.cluster.secret = Some(CLUSTER_SECRET.to_owned());
    })
    .await;
    let path = "/_coffer/v1/blobs/0123456789abcdef0123456789abcdef";
    let headers = peer_headers(CLUSTER_SECRET, "DELETE", path, "nonce-1");
    let (status, body) =
        send_peer(&t.endpoint(), reqwest::Method::DELETE, path, &headers, None).await;
    assert_ne!(status, 403, "the original request is accepted: {body}");
    for variant in [str::to_ascii_uppercase, |s: &str| {
        let mut chars: Vec<char> = s.chars().collect();
        if let Some(c) = chars.iter_mut().find(|c| c.is_ascii_lowercase()) {
            *c = c.to_ascii_uppercase();
        }
        chars.into_iter().collect()
    }] {
        let replay: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| {
                let v = if n == "x-coffer-signature" {
                    variant(v)
                } else {
                    v.clone()
                };
                (n.clone(), v)
            })
            .collect();
        let (status, body) =
            send_peer(&t.endpoint(), reqwest::Method::DELETE, path, &replay, None).await;
        assert_eq!(status, 403, "a replay in another case is refused: {body}");
        assert!(body.contains("replayed"), "{body}");
    }
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_blob_body_must_carry_its_mac() {
    let t = TestServer::start_with(Backend::Sqlite, |c| {
        c.cluster.secret = Some(CLUSTER_SECRET.to_owned());
    })
    .await;
    let id = "00112233445566778899aabbccddeeff";
    let path = format!("/_coffer/v1/blobs/{id}");
    // Without a trailer (a man in the middle that rewrote the body drops it).
    let headers = peer_headers(CLUSTER_SECRET, "PUT", &path, "nonce-a");
    let (status, body) = send_peer(
        &t.endpoint(),
        reqwest::Method::PUT,
        &path,
        &headers,
        Some(reqwest::Body::from(b"tampered bytes".to_vec())),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    // With a trailer that does not match the bytes.
    let headers = peer_headers(CLUSTER_SECRET, "PUT", &path, "nonce-b");
    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-coffer-body-mac", "00".repeat(32).parse().unwrap());
    let frames = futures::stream::iter(vec![
        Ok::<_, std::io::Error>(hyper::body::Frame::data(bytes::Bytes::from_static(
            b"tampered bytes",
        ))),
        Ok(hyper::body::Frame::trailers(trailers)),
    ]);
    let mut with_trailer = headers.clone();
    with_trailer.push(("trailer".into(), "x-coffer-body-mac".into()));
    let (status, body) = send_peer(
        &t.endpoint(),
        reqwest::Method::PUT,
        &path,
        &with_trailer,
        Some(reqwest::Body::wrap(http_body_util::StreamBody::new(frames))),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    // Nothing was kept: the blob does not exist.
    let headers = peer_headers(CLUSTER_SECRET, "GET", &path, "nonce-c");
    let (status, _) = send_peer(&t.endpoint(), reqwest::Method::GET, &path, &headers, None).await;
    assert_eq!(status, 404);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_object_checks_the_tags_of_the_source_version_it_copies() {
    let t = TestServer::start(Backend::Sqlite).await;
    let s3 = t.root_client();
    for bucket in ["src", "dst"] {
        s3.create_bucket().bucket(bucket).send().await.unwrap();
    }
    s3.put_bucket_versioning()
        .bucket("src")
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let public = s3
        .put_object()
        .bucket("src")
        .key("doc")
        .body(b"public text".to_vec().into())
        .tagging("class=public")
        .send()
        .await
        .unwrap();
    s3.put_object()
        .bucket("src")
        .key("doc")
        .body(b"secret text".to_vec().into())
        .tagging("class=secret")
        .send()
        .await
        .unwrap();
    let public_version = public.version_id().unwrap().to_owned();
    let policy = r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Action":["s3:GetObject","s3:GetObjectVersion"],"Resource":"arn:aws:s3:::src/*",
         "Condition":{"StringEquals":{"s3:ExistingObjectTag/class":"public"}}},
        {"Effect":"Allow","Action":"s3:PutObject","Resource":"arn:aws:s3:::dst/*"}
    ]}"#;
    let key = t.key_with_policy("copier", Some(policy)).await;
    let copy = |query: &str, source: &str| {
        let mut request = http::Request::put(format!("{}/dst/copy{query}", t.endpoint()))
            .header("x-amz-copy-source", source)
            .body(Vec::new())
            .unwrap();
        sign(&mut request, &key.id, &key.secret, false);
        request
    };
    // The public version may be copied.
    let (status, _, body) =
        crate::common::send(copy("", &format!("/src/doc?versionId={public_version}"))).await;
    assert_eq!(status, 200, "{body}");
    // The current (secret) version may not, whatever versionId the destination
    // request line carries.
    let (status, _, body) =
        crate::common::send(copy(&format!("?versionId={public_version}"), "/src/doc")).await;
    assert_eq!((status, xml_code(&body)), (403, "AccessDenied"), "{body}");
    assert_eq!(
        object_body(&t, "dst", "copy").await.unwrap(),
        b"public text"
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigv2_form_is_refused_when_sigv2_is_off() {
    let t = TestServer::start_with(Backend::Sqlite, |c| c.allow_sigv2 = false).await;
    t.root_client()
        .create_bucket()
        .bucket("forms")
        .send()
        .await
        .unwrap();
    let root = t.server.root_key();
    let expiration = (now() + time::Duration::minutes(5))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let policy = json!({"expiration": expiration, "conditions": [
        {"bucket": "forms"}, ["starts-with", "$key", ""]
    ]});
    let policy = BASE64.encode(policy.to_string());
    let signature = v2_signature(&root.secret, &policy);
    let fields = vec![
        ("key".to_owned(), "v2-form".to_owned()),
        ("AWSAccessKeyId".to_owned(), root.id.clone()),
        ("policy".to_owned(), policy),
        ("signature".to_owned(), signature),
    ];
    let (status, body) = post_form(&t.endpoint(), "forms", &fields).await;
    assert_eq!((status, xml_code(&body)), (400, "InvalidRequest"), "{body}");
    assert!(object_body(&t, "forms", "v2-form").await.is_none());
    t.stop().await;
}
