use crate::common::{Backend, TestServer};
use crate::on_both_backends;

async fn fill(s3: &aws_sdk_s3::Client, bucket: &str, keys: &[&str]) {
    s3.create_bucket().bucket(bucket).send().await.unwrap();
    for key in keys {
        s3.put_object()
            .bucket(bucket)
            .key(*key)
            .body(b"x".to_vec().into())
            .send()
            .await
            .unwrap();
    }
}

fn keys_of(out: &aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output) -> Vec<String> {
    out.contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect()
}

fn prefixes_of(out: &aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output) -> Vec<String> {
    out.common_prefixes()
        .iter()
        .filter_map(|p| p.prefix().map(str::to_owned))
        .collect()
}

async fn list_v2_with_delimiter_groups_common_prefixes(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    let keys = ["a/1", "a/2", "a/b/3", "b/1", "c", "d/e/f", "z"];
    fill(&s3, "tree", &keys).await;
    let top = s3
        .list_objects_v2()
        .bucket("tree")
        .delimiter("/")
        .send()
        .await
        .unwrap();
    assert_eq!(keys_of(&top), ["c", "z"]);
    assert_eq!(prefixes_of(&top), ["a/", "b/", "d/"]);
    assert_eq!(top.key_count(), Some(5));
    let under_a = s3
        .list_objects_v2()
        .bucket("tree")
        .prefix("a/")
        .delimiter("/")
        .send()
        .await
        .unwrap();
    assert_eq!(keys_of(&under_a), ["a/1", "a/2"]);
    assert_eq!(prefixes_of(&under_a), ["a/b/"]);
    let flat = s3
        .list_objects_v2()
        .bucket("tree")
        .prefix("a/")
        .send()
        .await
        .unwrap();
    assert_eq!(keys_of(&flat), ["a/1", "a/2", "a/b/3"]);
    let after = s3
        .list_objects_v2()
        .bucket("tree")
        .start_after("b/1")
        .send()
        .await
        .unwrap();
    assert_eq!(keys_of(&after), ["c", "d/e/f", "z"]);
    t.stop().await;
}

async fn list_v2_paginates_with_continuation_tokens(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    let keys = ["p/1", "p/2", "q/1", "q/2", "r", "s/1", "t"];
    fill(&s3, "pages", &keys).await;
    let mut seen_keys = Vec::new();
    let mut seen_prefixes = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let out = s3
            .list_objects_v2()
            .bucket("pages")
            .delimiter("/")
            .max_keys(2)
            .set_continuation_token(token.clone())
            .send()
            .await
            .unwrap();
        pages += 1;
        assert!(out.key_count().unwrap() <= 2);
        seen_keys.extend(keys_of(&out));
        seen_prefixes.extend(prefixes_of(&out));
        match out.next_continuation_token() {
            Some(next) => {
                assert_eq!(out.is_truncated(), Some(true));
                token = Some(next.to_owned());
            }
            None => break,
        }
    }
    assert_eq!(seen_keys, ["r", "t"]);
    assert_eq!(seen_prefixes, ["p/", "q/", "s/"]);
    assert_eq!(pages, 3);
    t.stop().await;
}

async fn list_v1_markers_and_url_encoding(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    let keys = ["a b", "a+b", "dir/x", "dir/y", "é", "z"];
    fill(&s3, "list-v1", &keys).await;
    let page = s3
        .list_objects()
        .bucket("list-v1")
        .max_keys(2)
        .send()
        .await
        .unwrap();
    assert_eq!(page.is_truncated(), Some(true));
    let first: Vec<&str> = page.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(first, ["a b", "a+b"]);
    let rest = s3
        .list_objects()
        .bucket("list-v1")
        .marker("a+b")
        .delimiter("/")
        .send()
        .await
        .unwrap();
    let keys: Vec<&str> = rest.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["z", "é"], "binary (UTF-8 byte) order puts é after z");
    assert_eq!(rest.common_prefixes().len(), 1);
    assert!(rest.contents()[0].owner().is_some(), "V1 lists owners");
    let url = format!("{}/list-v1?list-type=2&encoding-type=url", t.endpoint());
    let mut request = http::Request::get(url).body(Vec::new()).unwrap();
    let root = t.server.root_key();
    crate::common::sign(&mut request, &root.id, &root.secret, false);
    let (status, _, body) = crate::common::send(request).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<Key>a%20b</Key>"), "{body}");
    assert!(body.contains("<Key>a%2Bb</Key>"), "{body}");
    assert!(body.contains("<Key>%C3%A9</Key>"), "{body}");
    assert!(body.contains("<EncodingType>url</EncodingType>"), "{body}");
    t.stop().await;
}

on_both_backends!(
    list_v2_with_delimiter_groups_common_prefixes,
    list_v2_paginates_with_continuation_tokens,
    list_v1_markers_and_url_encoding,
);
