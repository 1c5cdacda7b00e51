//! SSE-KMS with the built-in key service: keys named by id, ARN or alias, the
//! default `aws/s3` key, encryption contexts, bucket defaults, multipart,
//! copies and forms; AWS's KMS errors for unknown, disabled and deleted keys;
//! policies that require a key; and the `coffer-server kms` commands.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
};
use base64::Engine as _;
use coffer_server::kms::{BuiltinKms, KeyProvider as _};
use coffer_server::meta::KmsKeyState;
use serde_json::json;

use crate::common::{Backend, TestServer, code, signed_policy, xml_code};
use crate::on_both_backends;

type Client = aws_sdk_s3::Client;

async fn new_key(t: &TestServer, name: &str) -> (String, String) {
    let kms = BuiltinKms::new(t.server.meta().clone(), "us-east-1".to_owned());
    let key = kms.create_key(name).await.unwrap();
    let arn = kms.arn(&key.id);
    (key.id, arn)
}

async fn set_state(t: &TestServer, id: &str, state: KmsKeyState, deletion: Option<i64>) {
    t.server
        .meta()
        .set_kms_key_state(id, state, deletion)
        .await
        .unwrap();
}

async fn read(s3: &Client, bucket: &str, key: &str) -> Result<Vec<u8>, String> {
    match s3.get_object().bucket(bucket).key(key).send().await {
        Ok(got) => Ok(got.body.collect().await.unwrap().into_bytes().to_vec()),
        Err(e) => Err(code(Err::<(), _>(e))),
    }
}

fn kms_put(
    s3: &Client,
    bucket: &str,
    key: &str,
    body: &'static [u8],
) -> aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .body(ByteStream::from_static(body))
}

async fn kms_objects_round_trip_under_named_and_default_keys(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("kms").send().await.unwrap();
    let (id, arn) = new_key(&t, "tenant-a").await;
    // By id, by ARN, by alias: the response names the key by its ARN.
    for (object, named) in [
        ("by-id", id.as_str()),
        ("by-arn", arn.as_str()),
        ("by-alias", "alias/tenant-a"),
    ] {
        let put = kms_put(&s3, "kms", object, b"kms protected bytes")
            .ssekms_key_id(named)
            .send()
            .await
            .unwrap();
        assert_eq!(
            put.server_side_encryption(),
            Some(&ServerSideEncryption::AwsKms)
        );
        assert_eq!(put.ssekms_key_id(), Some(arn.as_str()), "{object}");
        let got = s3
            .get_object()
            .bucket("kms")
            .key(object)
            .send()
            .await
            .unwrap();
        assert_eq!(
            got.server_side_encryption(),
            Some(&ServerSideEncryption::AwsKms)
        );
        assert_eq!(got.ssekms_key_id(), Some(arn.as_str()));
        let bytes = got.body.collect().await.unwrap().into_bytes();
        assert_eq!(&bytes[..], b"kms protected bytes");
        let head = s3
            .head_object()
            .bucket("kms")
            .key(object)
            .send()
            .await
            .unwrap();
        assert_eq!(
            head.server_side_encryption(),
            Some(&ServerSideEncryption::AwsKms)
        );
        assert_eq!(head.ssekms_key_id(), Some(arn.as_str()));
    }
    // The bytes on disk are not the plaintext (a large object, stored as a blob).
    let big = vec![b'P'; 300_000];
    s3.put_object()
        .bucket("kms")
        .key("big")
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id(&id)
        .body(ByteStream::from(big.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(read(&s3, "kms", "big").await.unwrap(), big);
    let ranged = s3
        .get_object()
        .bucket("kms")
        .key("big")
        .range("bytes=100000-100009")
        .send()
        .await
        .unwrap();
    assert_eq!(
        &ranged.body.collect().await.unwrap().into_bytes()[..],
        b"PPPPPPPPPP"
    );
    // No key named: the default aws/s3 key, made on first use.
    let put = kms_put(&s3, "kms", "default", b"d").send().await.unwrap();
    let default_arn = put.ssekms_key_id().unwrap().to_owned();
    assert_ne!(default_arn, arn);
    assert!(
        default_arn.starts_with("arn:aws:kms:us-east-1:"),
        "{default_arn}"
    );
    let again = kms_put(&s3, "kms", "default-2", b"d").send().await.unwrap();
    assert_eq!(again.ssekms_key_id(), Some(default_arn.as_str()));
    // An encryption context is bound to the data key and echoed.
    let context = base64::engine::general_purpose::STANDARD
        .encode(json!({"tenant": "a", "purpose": "test"}).to_string());
    let put = kms_put(&s3, "kms", "ctx", b"with context")
        .ssekms_key_id(&id)
        .ssekms_encryption_context(&context)
        .send()
        .await
        .unwrap();
    assert!(put.ssekms_encryption_context().is_some());
    assert_eq!(read(&s3, "kms", "ctx").await.unwrap(), b"with context");
    let bad_context = kms_put(&s3, "kms", "bad", b"x")
        .ssekms_encryption_context("not base64 json")
        .send()
        .await;
    assert_eq!(code(bad_context), "InvalidArgument");
    // A key id without aws:kms is refused.
    let stray = s3
        .put_object()
        .bucket("kms")
        .key("stray")
        .ssekms_key_id(&id)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await;
    assert_eq!(code(stray), "InvalidArgument");
    t.stop().await;
}

async fn unknown_disabled_and_deleted_keys_get_kms_errors(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("kms").send().await.unwrap();
    let unknown = kms_put(&s3, "kms", "x", b"x")
        .ssekms_key_id("00000000-0000-4000-8000-000000000000")
        .send()
        .await;
    assert_eq!(code(unknown), "KMS.NotFoundException");
    let (id, _) = new_key(&t, "shred-me").await;
    kms_put(&s3, "kms", "secret", b"tenant data")
        .ssekms_key_id(&id)
        .send()
        .await
        .unwrap();
    // Disabled: unreadable, and no new writes under it, until re-enabled.
    set_state(&t, &id, KmsKeyState::Disabled, None).await;
    assert_eq!(
        read(&s3, "kms", "secret").await,
        Err("KMS.DisabledException".to_owned())
    );
    let refused = kms_put(&s3, "kms", "more", b"x")
        .ssekms_key_id(&id)
        .send()
        .await;
    assert_eq!(code(refused), "KMS.DisabledException");
    set_state(&t, &id, KmsKeyState::Enabled, None).await;
    assert_eq!(read(&s3, "kms", "secret").await.unwrap(), b"tenant data");
    // Pending deletion: refused as KMS refuses it; cancelling restores access.
    let later = coffer_server::meta::now_millis() + 7 * 24 * 3600 * 1000;
    set_state(&t, &id, KmsKeyState::PendingDeletion, Some(later)).await;
    assert_eq!(
        read(&s3, "kms", "secret").await,
        Err("KMS.KMSInvalidStateException".to_owned())
    );
    set_state(&t, &id, KmsKeyState::Enabled, None).await;
    assert_eq!(read(&s3, "kms", "secret").await.unwrap(), b"tenant data");
    // Once the deletion date passes the key is gone, and the data with it.
    let past = coffer_server::meta::now_millis() - 1;
    set_state(&t, &id, KmsKeyState::PendingDeletion, Some(past)).await;
    assert_eq!(
        read(&s3, "kms", "secret").await,
        Err("KMS.NotFoundException".to_owned())
    );
    t.server.meta().purge_deleted_kms_keys().await.unwrap();
    assert!(t.server.meta().get_kms_key(&id).await.unwrap().is_none());
    t.stop().await;
}

async fn multipart_copy_form_and_bucket_default_use_kms(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("kms").send().await.unwrap();
    let (id, arn) = new_key(&t, "uploads").await;
    // Multipart: the upload's data key is made under the KMS key.
    let upload = s3
        .create_multipart_upload()
        .bucket("kms")
        .key("mpu")
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(upload.ssekms_key_id(), Some(arn.as_str()));
    let upload_id = upload.upload_id().unwrap();
    let part = s3
        .upload_part()
        .bucket("kms")
        .key("mpu")
        .upload_id(upload_id)
        .part_number(1)
        .body(ByteStream::from_static(b"one part"))
        .send()
        .await
        .unwrap();
    assert_eq!(part.ssekms_key_id(), Some(arn.as_str()));
    let done = s3
        .complete_multipart_upload()
        .bucket("kms")
        .key("mpu")
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .parts(
                    CompletedPart::builder()
                        .part_number(1)
                        .e_tag(part.e_tag().unwrap())
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        done.server_side_encryption(),
        Some(&ServerSideEncryption::AwsKms)
    );
    assert_eq!(done.ssekms_key_id(), Some(arn.as_str()));
    assert_eq!(read(&s3, "kms", "mpu").await.unwrap(), b"one part");
    // Copy: an unencrypted source to a KMS-encrypted copy.
    s3.put_object()
        .bucket("kms")
        .key("plain")
        .body(ByteStream::from_static(b"copied"))
        .send()
        .await
        .unwrap();
    let copy = s3
        .copy_object()
        .bucket("kms")
        .key("copy")
        .copy_source("kms/plain")
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(copy.ssekms_key_id(), Some(arn.as_str()));
    let head = s3
        .head_object()
        .bucket("kms")
        .key("copy")
        .send()
        .await
        .unwrap();
    assert_eq!(head.ssekms_key_id(), Some(arn.as_str()));
    assert_eq!(read(&s3, "kms", "copy").await.unwrap(), b"copied");
    // A browser form asks for it with fields.
    let root = t.server.root_key();
    let mut fields = signed_policy(
        vec![
            json!({"bucket": "kms"}),
            json!(["starts-with", "$key", "form"]),
            json!({"x-amz-server-side-encryption": "aws:kms"}),
            json!({"x-amz-server-side-encryption-aws-kms-key-id": id}),
        ],
        time::Duration::minutes(10),
        &root.id,
        &root.secret,
    );
    fields.insert(0, ("key".into(), "form".into()));
    fields.push(("x-amz-server-side-encryption".into(), "aws:kms".into()));
    fields.push((
        "x-amz-server-side-encryption-aws-kms-key-id".into(),
        id.clone(),
    ));
    let (status, body) = post_form(&t, "kms", &fields, b"form bytes").await;
    assert_eq!(status, 204, "{body}");
    let head = s3
        .head_object()
        .bucket("kms")
        .key("form")
        .send()
        .await
        .unwrap();
    assert_eq!(head.ssekms_key_id(), Some(arn.as_str()));
    // The bucket default: every write without its own SSE headers.
    s3.put_bucket_encryption()
        .bucket("kms")
        .server_side_encryption_configuration(
            ServerSideEncryptionConfiguration::builder()
                .rules(
                    ServerSideEncryptionRule::builder()
                        .apply_server_side_encryption_by_default(
                            ServerSideEncryptionByDefault::builder()
                                .sse_algorithm(ServerSideEncryption::AwsKms)
                                .kms_master_key_id(&arn)
                                .build()
                                .unwrap(),
                        )
                        .bucket_key_enabled(true)
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let config = s3
        .get_bucket_encryption()
        .bucket("kms")
        .send()
        .await
        .unwrap();
    let rule = &config
        .server_side_encryption_configuration()
        .unwrap()
        .rules()[0];
    let default = rule.apply_server_side_encryption_by_default().unwrap();
    assert_eq!(default.sse_algorithm(), &ServerSideEncryption::AwsKms);
    assert_eq!(default.kms_master_key_id(), Some(arn.as_str()));
    assert_eq!(rule.bucket_key_enabled(), Some(true));
    let put = s3
        .put_object()
        .bucket("kms")
        .key("defaulted")
        .body(ByteStream::from_static(b"by default"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        put.server_side_encryption(),
        Some(&ServerSideEncryption::AwsKms)
    );
    assert_eq!(put.ssekms_key_id(), Some(arn.as_str()));
    assert_eq!(put.bucket_key_enabled(), Some(true));
    assert_eq!(read(&s3, "kms", "defaulted").await.unwrap(), b"by default");
    // Disabling the default key stops writes that rely on it.
    set_state(&t, &id, KmsKeyState::Disabled, None).await;
    let refused = s3
        .put_object()
        .bucket("kms")
        .key("refused")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await;
    assert_eq!(code(refused), "KMS.DisabledException");
    t.stop().await;
}

async fn post_form(
    t: &TestServer,
    bucket: &str,
    fields: &[(String, String)],
    content: &[u8],
) -> (u16, String) {
    let boundary = "----CofferKmsBoundary";
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
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let response = reqwest::Client::new()
        .post(format!("{}/{bucket}", t.endpoint()))
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
    let _ = xml_code(&text);
    (status, text)
}

async fn policies_can_require_a_kms_key(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("kms").send().await.unwrap();
    let (id, arn) = new_key(&t, "required").await;
    let (other, _) = new_key(&t, "other").await;
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"],
             "Resource": ["arn:aws:s3:::kms", "arn:aws:s3:::kms/*"]},
            {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::kms/*",
             "Condition": {
                "StringEquals": {
                    "s3:x-amz-server-side-encryption": "aws:kms",
                    "s3:x-amz-server-side-encryption-aws-kms-key-id": arn
                }
             }}
        ]
    });
    let key = t.key_with_policy("tenant", Some(&policy.to_string())).await;
    let tenant = t.client_for(&key);
    let plain = tenant
        .put_object()
        .bucket("kms")
        .key("plain")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await;
    assert_eq!(code(plain), "AccessDenied");
    let wrong = kms_put(&tenant, "kms", "wrong", b"x")
        .ssekms_key_id(&other)
        .send()
        .await;
    assert_eq!(code(wrong), "AccessDenied");
    kms_put(&tenant, "kms", "right", b"allowed")
        .ssekms_key_id(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(read(&tenant, "kms", "right").await.unwrap(), b"allowed");
    let _ = id;
    t.stop().await;
}

/// `coffer-server kms` against the data directory of a running server.
fn cli(t: &TestServer, args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_coffer-server"))
        .arg("kms")
        .args(args)
        .arg("--data-dir")
        .arg(&t.data_dir)
        .env_remove("COFFER_DATABASE_URL")
        .env_remove("COFFER_MASTER_KEY")
        .env_remove("COFFER_MASTER_KEY_FILE")
        .env("COFFER_REGION", "us-east-1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_commands_create_list_disable_enable_and_schedule_deletion() {
    let t = TestServer::start(Backend::Sqlite).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("kms").send().await.unwrap();
    let (ok, out) = cli(&t, &["create", "cli-key"]);
    assert!(ok, "{out}");
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("KeyId: "))
        .unwrap_or_else(|| panic!("{out}"))
        .to_owned();
    let arn = out
        .lines()
        .find_map(|l| l.strip_prefix("Arn: "))
        .unwrap_or_else(|| panic!("{out}"))
        .to_owned();
    assert_eq!(arn, format!("arn:aws:kms:us-east-1:000000000000:key/{id}"));
    kms_put(&s3, "kms", "obj", b"cli keyed")
        .ssekms_key_id(&arn)
        .send()
        .await
        .unwrap();
    let (ok, out) = cli(&t, &["list"]);
    assert!(
        ok && out.contains(&id) && out.contains("cli-key") && out.contains("Enabled"),
        "{out}"
    );
    let (ok, out) = cli(&t, &["disable", &id]);
    assert!(ok, "{out}");
    assert_eq!(
        read(&s3, "kms", "obj").await,
        Err("KMS.DisabledException".to_owned())
    );
    let (ok, out) = cli(&t, &["enable", &id]);
    assert!(ok, "{out}");
    assert_eq!(read(&s3, "kms", "obj").await.unwrap(), b"cli keyed");
    let (ok, out) = cli(&t, &["delete", &id, "--pending-window-in-days", "3"]);
    assert!(!ok, "a window under 7 days is refused: {out}");
    let (ok, out) = cli(&t, &["delete", &id]);
    assert!(ok && out.contains("DeletionDate:"), "{out}");
    let (_, out) = cli(&t, &["list"]);
    assert!(out.contains("PendingDeletion"), "{out}");
    assert_eq!(
        read(&s3, "kms", "obj").await,
        Err("KMS.KMSInvalidStateException".to_owned())
    );
    let (ok, out) = cli(&t, &["disable", "no-such-key"]);
    assert!(!ok, "{out}");
    t.stop().await;
}

on_both_backends!(
    kms_objects_round_trip_under_named_and_default_keys,
    unknown_disabled_and_deleted_keys_get_kms_errors,
    multipart_copy_form_and_bucket_default_use_kms,
    policies_can_require_a_kms_key,
);
