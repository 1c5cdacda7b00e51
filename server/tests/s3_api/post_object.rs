//! Browser form uploads (PostObject): raw multipart/form-data requests with a
//! POST policy signed here with SigV4, as a web page would send them.

use aws_sdk_s3::types::ObjectOwnership;
use serde_json::json;

use crate::common::{Backend, TestServer, code, signed_policy, xml_code};
use crate::on_both_backends;

/// Sends a form (fields, then the file) to `POST /bucket`.
async fn post_form(
    endpoint: &str,
    bucket: &str,
    fields: &[(String, String)],
    file_name: &str,
    content: &[u8],
) -> (u16, reqwest::header::HeaderMap, String) {
    post_form_to(
        &format!("{endpoint}/{bucket}"),
        None,
        fields,
        file_name,
        content,
    )
    .await
}

/// Sends a form to `url`, with a `Host` header when given (virtual-hosted style).
async fn post_form_to(
    url: &str,
    host: Option<&str>,
    fields: &[(String, String)],
    file_name: &str,
    content: &[u8],
) -> (u16, reqwest::header::HeaderMap, String) {
    let boundary = "----CofferFormBoundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let mut request = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(url);
    if let Some(host) = host {
        request = request.header("host", host);
    }
    let response = request
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap_or_default())
}

fn field(name: &str, value: &str) -> (String, String) {
    (name.to_owned(), value.to_owned())
}

async fn form_upload_substitutes_filename_and_keeps_fields(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket()
        .bucket("forms")
        .object_ownership(ObjectOwnership::ObjectWriter)
        .send()
        .await
        .unwrap();
    let root = t.server.root_key();
    let tagging =
        "<Tagging><TagSet><Tag><Key>source</Key><Value>browser</Value></Tag></TagSet></Tagging>";
    let mut fields = vec![
        field("key", "uploads/${filename}"),
        field("Content-Type", "text/plain"),
        field("success_action_status", "201"),
        field("x-amz-meta-owner", "alice"),
        field("tagging", tagging),
        field("acl", "public-read"),
    ];
    fields.extend(signed_policy(
        vec![
            json!({"bucket": "forms"}),
            json!(["starts-with", "$key", "uploads/"]),
            json!(["starts-with", "$Content-Type", "text/"]),
            json!(["content-length-range", 1, 1024]),
            json!({"success_action_status": "201"}),
            json!(["starts-with", "$x-amz-meta-owner", ""]),
            json!({"tagging": tagging}),
            json!({"acl": "public-read"}),
        ],
        time::Duration::minutes(5),
        &root.id,
        &root.secret,
    ));
    let (status, _, body) =
        post_form(&t.endpoint(), "forms", &fields, "hello.txt", b"hello form").await;
    assert_eq!(status, 201, "{body}");
    assert!(body.contains("<Key>uploads/hello.txt</Key>"), "{body}");
    assert!(body.contains("<Bucket>forms</Bucket>"), "{body}");
    let got = s3
        .get_object()
        .bucket("forms")
        .key("uploads/hello.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_type(), Some("text/plain"));
    assert_eq!(
        got.metadata()
            .and_then(|m| m.get("owner"))
            .map(String::as_str),
        Some("alice")
    );
    assert_eq!(got.tag_count(), Some(1));
    let bytes = got.body.collect().await.unwrap().into_bytes();
    assert_eq!(&bytes[..], b"hello form");
    let tags = s3
        .get_object_tagging()
        .bucket("forms")
        .key("uploads/hello.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(tags.tag_set()[0].value(), "browser");
    // The `acl` field made it public.
    let anonymous = reqwest::get(format!("{}/forms/uploads/hello.txt", t.endpoint()))
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 200);
    t.stop().await;
}

async fn form_upload_answers_redirect_and_status_codes(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("forms").send().await.unwrap();
    let root = t.server.root_key();
    let signed = |extra: serde_json::Value| {
        signed_policy(
            vec![
                json!({"bucket": "forms"}),
                json!(["starts-with", "$key", ""]),
                extra,
            ],
            time::Duration::minutes(5),
            &root.id,
            &root.secret,
        )
    };
    let redirect = "https://app.example.com/done?from=form";
    let mut fields = vec![
        field("key", "r/${filename}"),
        field("success_action_redirect", redirect),
    ];
    fields.extend(signed(json!({"success_action_redirect": redirect})));
    let (status, headers, _) = post_form(&t.endpoint(), "forms", &fields, "a.txt", b"a").await;
    assert_eq!(status, 303);
    let location = headers["location"].to_str().unwrap();
    assert!(
        location
            .starts_with("https://app.example.com/done?from=form&bucket=forms&key=r%2Fa.txt&etag="),
        "{location}"
    );
    let etag = s3
        .head_object()
        .bucket("forms")
        .key("r/a.txt")
        .send()
        .await
        .unwrap()
        .e_tag()
        .unwrap()
        .trim_matches('"')
        .to_owned();
    assert!(location.contains(&etag), "{location}");
    let mut fields = vec![field("key", "s200"), field("success_action_status", "200")];
    fields.extend(signed(json!({"success_action_status": "200"})));
    let (status, _, body) = post_form(&t.endpoint(), "forms", &fields, "b", b"b").await;
    assert_eq!((status, body.as_str()), (200, ""));
    let mut fields = vec![field("key", "s204")];
    fields.extend(signed(json!(["starts-with", "$key", "s"])));
    let (status, _, _) = post_form(&t.endpoint(), "forms", &fields, "c", b"c").await;
    assert_eq!(status, 204);
    for key in ["s200", "s204"] {
        s3.head_object()
            .bucket("forms")
            .key(key)
            .send()
            .await
            .unwrap();
    }
    t.stop().await;
}

async fn form_policy_violations_are_access_denied(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("forms").send().await.unwrap();
    s3.create_bucket().bucket("other").send().await.unwrap();
    let root = t.server.root_key();
    let policy = |bucket: &str, expires: time::Duration| {
        signed_policy(
            vec![
                json!({"bucket": bucket}),
                json!(["starts-with", "$key", "uploads/"]),
                json!(["eq", "$Content-Type", "image/png"]),
                json!(["content-length-range", 2, 8]),
            ],
            expires,
            &root.id,
            &root.secret,
        )
    };
    let fields = |key: &str, content_type: &str, bucket: &str, expires| {
        let mut f = vec![field("key", key), field("Content-Type", content_type)];
        f.extend(policy(bucket, expires));
        f
    };
    let five = time::Duration::minutes(5);
    let cases = [
        (
            "elsewhere/x",
            "image/png",
            "forms",
            five,
            &b"png"[..],
            "key",
        ),
        (
            "uploads/x",
            "text/html",
            "forms",
            five,
            &b"png"[..],
            "Content-Type",
        ),
        (
            "uploads/x",
            "image/png",
            "other",
            five,
            &b"png"[..],
            "bucket",
        ),
        (
            "uploads/x",
            "image/png",
            "forms",
            time::Duration::minutes(-1),
            &b"png"[..],
            "expired",
        ),
    ];
    for (key, content_type, bucket, expires, content, what) in cases {
        let (status, _, body) = post_form(
            &t.endpoint(),
            "forms",
            &fields(key, content_type, bucket, expires),
            "f.png",
            content,
        )
        .await;
        assert_eq!(
            (status, xml_code(&body)),
            (403, "AccessDenied"),
            "{what}: {body}"
        );
        assert!(
            body.contains("Invalid according to Policy"),
            "{what}: {body}"
        );
    }
    // Size limits keep their own codes, as on AWS.
    let (status, _, body) = post_form(
        &t.endpoint(),
        "forms",
        &fields("uploads/x", "image/png", "forms", five),
        "f.png",
        b"far too large for the policy",
    )
    .await;
    assert_eq!((status, xml_code(&body)), (400, "EntityTooLarge"), "{body}");
    // A field the policy does not cover is refused too.
    let mut extra = fields("uploads/x", "image/png", "forms", five);
    extra.push(field("x-amz-meta-sneaky", "1"));
    let (status, _, body) = post_form(&t.endpoint(), "forms", &extra, "f.png", b"png").await;
    assert_eq!((status, xml_code(&body)), (403, "AccessDenied"), "{body}");
    assert_eq!(
        code(
            s3.head_object()
                .bucket("forms")
                .key("uploads/x")
                .send()
                .await
        ),
        "NotFound",
        "nothing was stored"
    );
    // The same form within the policy goes through.
    let (status, _, body) = post_form(
        &t.endpoint(),
        "forms",
        &fields("uploads/x", "image/png", "forms", five),
        "f.png",
        b"png",
    )
    .await;
    assert_eq!(status, 204, "{body}");
    t.stop().await;
}

async fn form_acl_needs_acls_enabled(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("forms").send().await.unwrap();
    let root = t.server.root_key();
    let mut fields = vec![field("key", "k"), field("acl", "public-read")];
    fields.extend(signed_policy(
        vec![
            json!({"bucket": "forms"}),
            json!({"key": "k"}),
            json!({"acl": "public-read"}),
        ],
        time::Duration::minutes(5),
        &root.id,
        &root.secret,
    ));
    let (status, _, body) = post_form(&t.endpoint(), "forms", &fields, "f", b"x").await;
    assert_eq!(
        (status, xml_code(&body)),
        (400, "AccessControlListNotSupported"),
        "{body}"
    );
    t.stop().await;
}

async fn virtual_hosted_form_upload_substitutes_filename(backend: Backend) {
    let t = TestServer::start_with(backend, |c| c.domain = Some("s3.coffer.test".to_owned())).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("vforms").send().await.unwrap();
    let root = t.server.root_key();
    let mut fields = vec![field("key", "v/${filename}")];
    fields.extend(signed_policy(
        vec![
            json!({"bucket": "vforms"}),
            json!(["starts-with", "$key", "v/"]),
        ],
        time::Duration::minutes(5),
        &root.id,
        &root.secret,
    ));
    let (status, _, body) = post_form_to(
        &format!("{}/", t.endpoint()),
        Some("vforms.s3.coffer.test"),
        &fields,
        "photo.jpg",
        b"jpeg",
    )
    .await;
    assert_eq!(status, 204, "{body}");
    s3.head_object()
        .bucket("vforms")
        .key("v/photo.jpg")
        .send()
        .await
        .unwrap();
    t.stop().await;
}

on_both_backends!(
    virtual_hosted_form_upload_substitutes_filename,
    form_upload_substitutes_filename_and_keeps_fields,
    form_upload_answers_redirect_and_status_codes,
    form_policy_violations_are_access_denied,
    form_acl_needs_acls_enabled,
);
