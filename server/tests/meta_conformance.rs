//! One conformance suite for the metadata store, run against SQLite and Postgres:
//! both backends must behave identically for everything the server and the
//! operator rely on.

use std::collections::BTreeSet;

use coffer_server::crypto::Key;
use coffer_server::meta::{
    Acl, CannedAcl, Grantee, ListQuery, MetaError, MetaStore, MultipartUpload, NewAccessKey,
    NewBucket, NodeProgress, NodeState, OBJECT_LOCK, ObjectChecksum, ObjectHeaders, ObjectLock,
    ObjectMeta, ObjectOwnership, Part, PublicAccessBlock, Retention, RetentionMode, Segment,
    Versioning, WriteCondition, now_millis,
};

async fn sqlite_store() -> MetaStore {
    let dir = coffer_testkit::temp_dir("meta");
    MetaStore::connect(&format!("sqlite://{}", dir.join("meta.db").display()))
        .await
        .expect("sqlite store")
}

async fn postgres_store() -> MetaStore {
    MetaStore::connect(&coffer_testkit::postgres_url().await)
        .await
        .expect("postgres store")
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(super::sqlite_store().await).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name(super::postgres_store().await).await
                }
            }
        )*
    };
}

fn bucket(name: &str) -> NewBucket {
    NewBucket {
        name: name.to_owned(),
        owner: "owner-1".to_owned(),
        region: "us-east-1".to_owned(),
    }
}

fn object(bucket: &str, key: &str, blob: &str) -> ObjectMeta {
    ObjectMeta {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        size: 3,
        etag: format!("etag-{blob}"),
        last_modified: now_millis(),
        headers: ObjectHeaders::default(),
        checksum: ObjectChecksum::default(),
        segments: vec![Segment {
            blob: blob.to_owned(),
            size: 3,
            checksum: None,
            replicas: vec!["n1".to_owned()],
            inline: None,
            stored_size: None,
        }],
        ..ObjectMeta::default()
    }
}

async fn buckets_and_configs(store: MetaStore) {
    store.create_bucket(&bucket("b2")).await.unwrap();
    store.create_bucket(&bucket("b1")).await.unwrap();
    assert!(matches!(
        store.create_bucket(&bucket("b1")).await,
        Err(MetaError::BucketAlreadyExists(_))
    ));
    let names: Vec<String> = store
        .list_buckets()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(names, ["b1", "b2"]);
    store.set_bucket_owner("b1", "k8s:team/b1").await.unwrap();
    assert_eq!(
        store.require_bucket("b1").await.unwrap().owner,
        "k8s:team/b1"
    );
    store
        .set_bucket_config("b1", "example", Some("first"))
        .await
        .unwrap();
    store
        .set_bucket_config("b1", "example", Some("second"))
        .await
        .unwrap();
    assert_eq!(
        store
            .get_bucket_config("b1", "example")
            .await
            .unwrap()
            .as_deref(),
        Some("second")
    );
    store.set_bucket_policy("b1", Some("{}")).await.unwrap();
    assert_eq!(
        store.get_bucket_policy("b1").await.unwrap().as_deref(),
        Some("{}")
    );
    store.set_bucket_policy("b1", None).await.unwrap();
    assert_eq!(store.get_bucket_policy("b1").await.unwrap(), None);
    assert!(matches!(
        store.set_bucket_config("nope", "x", Some("y")).await,
        Err(MetaError::NoSuchBucket(_))
    ));
    store
        .put_object(&object("b1", "k", "blob1"), &WriteCondition::None)
        .await
        .unwrap();
    let usage = store.bucket_usage("b1").await.unwrap();
    assert_eq!((usage.objects, usage.bytes), (1, 3));
    assert!(matches!(
        store.delete_bucket("b1").await,
        Err(MetaError::BucketNotEmpty(_))
    ));
    store.delete_object("b1", "k").await.unwrap();
    store.delete_bucket("b1").await.unwrap();
    assert!(store.get_bucket("b1").await.unwrap().is_none());
    assert_eq!(
        store.get_bucket_config("b1", "versioning").await.unwrap(),
        None
    );
    assert!(matches!(
        store.delete_bucket("b1").await,
        Err(MetaError::NoSuchBucket(_))
    ));
}

async fn access_keys(store: MetaStore) {
    let key = store
        .create_access_key(&NewAccessKey {
            name: "app".to_owned(),
            owner: "k8s:ns/app".to_owned(),
            policy: Some("{\"Statement\":[]}".to_owned()),
            is_root: false,
            credentials: None,
        })
        .await
        .unwrap();
    assert_eq!(key.id.len(), 20);
    assert_eq!(key.secret.len(), 40);
    let fixed = store
        .create_access_key(&NewAccessKey {
            name: "root".to_owned(),
            owner: "root".to_owned(),
            policy: None,
            is_root: true,
            credentials: Some(("ROOTID".to_owned(), "rootsecret".to_owned())),
        })
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_access_key(&NewAccessKey {
                credentials: Some(("ROOTID".to_owned(), "x".to_owned())),
                ..NewAccessKey {
                    name: "dup".to_owned(),
                    owner: "x".to_owned(),
                    policy: None,
                    is_root: false,
                    credentials: None
                }
            })
            .await,
        Err(MetaError::AccessKeyAlreadyExists(_))
    ));
    assert_eq!(store.root_access_key().await.unwrap().unwrap().id, fixed.id);
    assert_eq!(store.get_access_key(&key.id).await.unwrap().unwrap(), key);
    assert_eq!(
        store.list_access_keys_by_owner("k8s:ns/app").await.unwrap(),
        vec![key.clone()]
    );
    store.set_access_key_policy(&key.id, None).await.unwrap();
    store.set_access_key_expiry(&key.id, Some(1)).await.unwrap();
    let changed = store.get_access_key(&key.id).await.unwrap().unwrap();
    assert_eq!(changed.policy, None);
    assert!(changed.is_expired_at(now_millis()));
    store.delete_access_key(&key.id).await.unwrap();
    assert!(matches!(
        store.delete_access_key(&key.id).await,
        Err(MetaError::NoSuchAccessKey(_))
    ));
    assert_eq!(store.list_access_keys().await.unwrap().len(), 1);
}

async fn object_writes_conditions_and_garbage(store: MetaStore) {
    store.create_bucket(&bucket("objs")).await.unwrap();
    assert!(matches!(
        store
            .put_object(&object("missing", "k", "b0"), &WriteCondition::None)
            .await,
        Err(MetaError::NoSuchBucket(_))
    ));
    store
        .put_object(&object("objs", "k", "b1"), &WriteCondition::IfNoneMatchAny)
        .await
        .unwrap();
    assert!(matches!(
        store
            .put_object(&object("objs", "k", "b2"), &WriteCondition::IfNoneMatchAny)
            .await,
        Err(MetaError::PreconditionFailed)
    ));
    assert!(matches!(
        store
            .put_object(
                &object("objs", "k", "b2"),
                &WriteCondition::IfMatch("wrong".to_owned())
            )
            .await,
        Err(MetaError::PreconditionFailed)
    ));
    assert!(matches!(
        store
            .put_object(
                &object("objs", "other", "b2"),
                &WriteCondition::IfMatch("etag-b1".to_owned())
            )
            .await,
        Err(MetaError::NoSuchKey)
    ));
    store
        .put_object(
            &object("objs", "k", "b3"),
            &WriteCondition::IfMatch("etag-b1".to_owned()),
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .get_object("objs", "k")
            .await
            .unwrap()
            .unwrap()
            .segments[0]
            .blob,
        "b3"
    );
    assert_eq!(store.garbage_blobs("n1", 10).await.unwrap(), ["b1"]);
    // Rewriting metadata over the same blob keeps it live.
    let mut same = object("objs", "k", "b3");
    same.headers.content_type = Some("text/plain".to_owned());
    store
        .put_object(&same, &WriteCondition::None)
        .await
        .unwrap();
    assert_eq!(store.garbage_blobs("n1", 10).await.unwrap(), ["b1"]);
    assert!(store.delete_object("objs", "k").await.unwrap().existed);
    assert!(!store.delete_object("objs", "k").await.unwrap().existed);
    assert_eq!(store.garbage_blobs("n1", 10).await.unwrap(), ["b1", "b3"]);
    store
        .forget_garbage_blobs("n1", &["b1".to_owned()])
        .await
        .unwrap();
    assert_eq!(store.garbage_blobs("n1", 10).await.unwrap(), ["b3"]);
    let known = store
        .known_blobs(&["b3".to_owned(), "zz".to_owned()])
        .await
        .unwrap();
    assert_eq!(known.into_iter().collect::<Vec<_>>(), ["b3"]);
}

async fn concurrent_overwrites_leak_no_blob(store: MetaStore) {
    store.create_bucket(&bucket("race")).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .put_object(
                    &object("race", "hot", &format!("blob{i:02}")),
                    &WriteCondition::None,
                )
                .await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let current = store
        .get_object("race", "hot")
        .await
        .unwrap()
        .unwrap()
        .segments[0]
        .blob
        .clone();
    let garbage = store.garbage_blobs("n1", 100).await.unwrap();
    assert_eq!(garbage.len(), 19, "every replaced blob is garbage");
    assert!(!garbage.contains(&current));
}

/// Many writers over three buckets and a few keys each, new keys and overwrites
/// mixed: every write commits (concurrent batches never deadlock or fail each
/// other), and the usage counters and garbage come out exact.
async fn concurrent_writes_across_buckets_all_commit(store: MetaStore) {
    let buckets = ["ca", "cb", "cc"];
    for b in buckets {
        store.create_bucket(&bucket(b)).await.unwrap();
    }
    let mut tasks = Vec::new();
    for i in 0..300 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            // Descending and ascending bucket order alternate between writers.
            let b = ["ca", "cb", "cc"][if i % 2 == 0 { i % 3 } else { 2 - i % 3 }];
            let key = format!("k{}", i % 7);
            store
                .put_object(&object(b, &key, &format!("w{i:03}")), &WriteCondition::None)
                .await
        }));
    }
    for task in tasks {
        task.await.unwrap().expect("every write commits");
    }
    let mut live = 0;
    for b in buckets {
        let usage = store.bucket_usage(b).await.unwrap();
        assert_eq!(usage.objects, 7, "{b}");
        assert_eq!(usage.bytes, 7 * 3, "{b}");
        live += 7;
    }
    let garbage = store.garbage_blobs("n1", 1000).await.unwrap();
    assert_eq!(
        garbage.len(),
        300 - live,
        "every replaced version is garbage"
    );
}

/// Every listing, paged to the end, equals the answer computed the slow way.
async fn listing_matches_a_brute_force_model(store: MetaStore) {
    store.create_bucket(&bucket("model")).await.unwrap();
    let alphabet = ["a", "b", "/", "é", "z", "-", "\u{7f}"];
    let mut keys = BTreeSet::new();
    let mut seed = 7u64;
    while keys.len() < 250 {
        let mut key = String::new();
        for _ in 0..(1 + seed % 6) {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            key.push_str(alphabet[(seed >> 33) as usize % alphabet.len()]);
        }
        keys.insert(key);
    }
    for (i, key) in keys.iter().enumerate() {
        store
            .put_object(
                &object("model", key, &format!("blob{i}")),
                &WriteCondition::None,
            )
            .await
            .unwrap();
    }
    let sorted: Vec<&String> = {
        let mut v: Vec<&String> = keys.iter().collect();
        v.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        v
    };
    for prefix in ["", "a", "a/", "b", "é", "z/"] {
        for delimiter in [None, Some("/"), Some("a")] {
            for page_size in [1usize, 3, 1000] {
                // The model: S3 semantics over the sorted key list.
                let mut expected = Vec::new();
                for key in &sorted {
                    let Some(rest) = key.strip_prefix(prefix) else {
                        continue;
                    };
                    let entry = match delimiter.and_then(|d| rest.find(d).map(|i| (d, i))) {
                        Some((d, i)) => format!("P:{}{}", prefix, &rest[..i + d.len()]),
                        None => format!("K:{key}"),
                    };
                    if expected.last() != Some(&entry) {
                        expected.push(entry);
                    }
                }
                let mut actual = Vec::new();
                let mut start_after: Option<Vec<u8>> = None;
                loop {
                    let page = store
                        .list_objects(
                            "model",
                            &ListQuery {
                                prefix: prefix.to_owned(),
                                delimiter: delimiter.map(str::to_owned),
                                start_after: start_after.clone(),
                                max_keys: page_size,
                            },
                        )
                        .await
                        .unwrap();
                    assert!(page.items.len() + page.common_prefixes.len() <= page_size);
                    let mut entries: Vec<String> =
                        page.items.iter().map(|o| format!("K:{}", o.key)).collect();
                    entries.extend(page.common_prefixes.iter().map(|p| format!("P:{p}")));
                    entries.sort_by(|a, b| a.as_bytes()[2..].cmp(&b.as_bytes()[2..]));
                    actual.extend(entries);
                    if !page.is_truncated {
                        break;
                    }
                    start_after = page.last.clone();
                }
                assert_eq!(
                    actual, expected,
                    "prefix {prefix:?} delimiter {delimiter:?} page {page_size}"
                );
            }
        }
    }
}

async fn multipart_uploads_and_parts(store: MetaStore) {
    store.create_bucket(&bucket("mp")).await.unwrap();
    let upload = |id: &str, key: &str| MultipartUpload {
        upload_id: id.to_owned(),
        bucket: "mp".to_owned(),
        key: key.to_owned(),
        initiated: now_millis(),
        owner: "o".to_owned(),
        headers: ObjectHeaders::default(),
        tags: Default::default(),
        checksum_algorithm: None,
        checksum_type: None,
        lock: Default::default(),
    };
    for (id, key) in [("u1", "x/a"), ("u2", "x/a"), ("u3", "x/b"), ("u4", "y")] {
        store
            .create_multipart_upload(&upload(id, key))
            .await
            .unwrap();
    }
    assert!(matches!(
        store.get_multipart_upload("mp", "other", "u1").await,
        Err(MetaError::NoSuchUpload)
    ));
    let part = |n: u32, blob: &str| Part {
        part_number: n,
        size: 5,
        etag: format!("e{n}"),
        blob_id: blob.to_owned(),
        checksum: None,
        last_modified: now_millis(),
        replicas: vec!["n1".to_owned()],
        stored_size: None,
    };
    store.put_part("u1", &part(1, "p1")).await.unwrap();
    store.put_part("u1", &part(2, "p2")).await.unwrap();
    store.put_part("u1", &part(2, "p2b")).await.unwrap();
    store.put_part("u1", &part(3, "p3")).await.unwrap();
    assert_eq!(store.garbage_blobs("n1", 10).await.unwrap(), ["p2"]);
    let parts = store.list_parts("u1", 1, 10).await.unwrap();
    assert_eq!(
        parts.iter().map(|p| p.blob_id.as_str()).collect::<Vec<_>>(),
        ["p2b", "p3"]
    );
    let mut done = object("mp", "x/a", "p1");
    done.segments.push(Segment {
        blob: "p2b".to_owned(),
        size: 5,
        checksum: None,
        replicas: Vec::new(),
        inline: None,
        stored_size: None,
    });
    store
        .complete_multipart_upload("u1", &done, &WriteCondition::None)
        .await
        .unwrap();
    assert_eq!(
        store.garbage_blobs("n1", 10).await.unwrap(),
        ["p2", "p3"],
        "unused part 3 is garbage"
    );
    assert!(matches!(
        store.put_part("u1", &part(4, "p4")).await,
        Err(MetaError::NoSuchUpload)
    ));
    let page = store
        .list_multipart_uploads(
            "mp",
            &ListQuery {
                prefix: "x/".to_owned(),
                delimiter: None,
                start_after: None,
                max_keys: 10,
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        page.items
            .iter()
            .map(|u| u.upload_id.as_str())
            .collect::<Vec<_>>(),
        ["u2", "u3"]
    );
    let grouped = store
        .list_multipart_uploads(
            "mp",
            &ListQuery {
                prefix: String::new(),
                delimiter: Some("/".to_owned()),
                start_after: None,
                max_keys: 10,
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(grouped.common_prefixes, ["x/"]);
    assert_eq!(grouped.items.len(), 1);
    let after = store
        .list_multipart_uploads(
            "mp",
            &ListQuery {
                prefix: String::new(),
                delimiter: None,
                start_after: Some(b"x/a".to_vec()),
                max_keys: 1,
            },
            Some("u2"),
        )
        .await
        .unwrap();
    assert_eq!(after.items[0].upload_id, "u3");
    assert!(after.is_truncated);
    store.abort_multipart_upload("u3").await.unwrap();
    assert!(matches!(
        store.abort_multipart_upload("u3").await,
        Err(MetaError::NoSuchUpload)
    ));
    // Deleting the bucket aborts what is left.
    store.delete_object("mp", "x/a").await.unwrap();
    store.delete_bucket("mp").await.unwrap();
}

async fn nodes_and_replicas(store: MetaStore) {
    let n1 = store
        .register_node("n1", "http://a:1", "z1", "chk")
        .await
        .unwrap();
    assert_eq!(n1.state, NodeState::Active);
    store
        .register_node("n2", "http://b:1", "z2", "chk")
        .await
        .unwrap();
    store
        .register_node("n3", "http://c:1", "z1", "chk")
        .await
        .unwrap();
    store
        .set_node_state("n2", NodeState::Draining)
        .await
        .unwrap();
    // A restart refreshes the address but keeps the node draining.
    let n2 = store
        .register_node("n2", "http://b:2", "z2", "chk")
        .await
        .unwrap();
    assert_eq!(
        (n2.state, n2.url.as_str()),
        (NodeState::Draining, "http://b:2")
    );
    let progress = NodeProgress {
        under_replicated: 4,
        ..NodeProgress::default()
    };
    store.heartbeat_node("n1", &progress).await.unwrap();
    assert!(matches!(
        store.heartbeat_node("nx", &progress).await,
        Err(MetaError::NoSuchNode(_))
    ));
    let nodes = store.list_nodes().await.unwrap();
    assert_eq!(
        nodes.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(),
        ["n1", "n2", "n3"]
    );
    assert_eq!(nodes[0].progress.under_replicated, 4);

    // A commit records the replicas its blobs were written to.
    store.create_bucket(&bucket("rep")).await.unwrap();
    let mut written = object("rep", "k", "blob-a");
    written.segments[0].replicas = vec!["n1".to_owned(), "n2".to_owned()];
    store
        .put_object(&written, &WriteCondition::None)
        .await
        .unwrap();
    assert_eq!(store.replicas_of("blob-a").await.unwrap(), ["n1", "n2"]);
    store.add_replica("blob-a", "n3").await.unwrap();
    store.add_replica("blob-a", "n3").await.unwrap();
    let page = store.blob_replica_page("", 10).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].nodes, ["n1", "n2", "n3"]);
    assert_eq!(page[0].size, 3);
    assert_eq!(
        store.replicas_on_node("n3", "", 10).await.unwrap(),
        ["blob-a"]
    );
    let counts = store.replica_counts().await.unwrap();
    assert_eq!(counts.len(), 3);
    assert!(
        counts
            .iter()
            .all(|(_, blobs, bytes)| (*blobs, *bytes) == (1, 3))
    );
    let states = store
        .blob_states("n3", &["blob-a".to_owned(), "nope".to_owned()])
        .await
        .unwrap();
    assert_eq!(states, [(Some(true), true), (None, false)]);

    // A surplus copy goes only while enough others remain on the counted nodes.
    let homes = ["n1".to_owned(), "n3".to_owned()];
    assert!(
        !store
            .remove_surplus_replica("blob-a", "n2", &homes[..1], 2)
            .await
            .unwrap()
    );
    assert!(
        store
            .remove_surplus_replica("blob-a", "n2", &homes, 2)
            .await
            .unwrap()
    );
    assert!(
        !store
            .remove_surplus_replica("blob-a", "n1", &homes, 2)
            .await
            .unwrap()
    );
    assert_eq!(store.replicas_of("blob-a").await.unwrap(), ["n1", "n3"]);

    // Garbage is per node: each holder deletes its copy; the row goes with the last.
    store.delete_object("rep", "k").await.unwrap();
    assert_eq!(store.garbage_blobs("n1", 10).await.unwrap(), ["blob-a"]);
    assert!(store.garbage_blobs("n2", 10).await.unwrap().is_empty());
    store
        .forget_garbage_blobs("n1", &["blob-a".to_owned()])
        .await
        .unwrap();
    assert_eq!(store.replicas_of("blob-a").await.unwrap(), ["n3"]);
    assert!(store.garbage_blobs("n1", 10).await.unwrap().is_empty());
    store
        .forget_garbage_blobs("n3", &["blob-a".to_owned()])
        .await
        .unwrap();
    assert_eq!(
        store
            .blob_states("n3", &["blob-a".to_owned()])
            .await
            .unwrap(),
        [(None, false)]
    );

    store.remove_node("n3").await.unwrap();
    assert!(matches!(
        store.remove_node("n3").await,
        Err(MetaError::NoSuchNode(_))
    ));
    assert_eq!(store.list_nodes().await.unwrap().len(), 2);
}

async fn versions_markers_and_garbage(store: MetaStore) {
    store.create_bucket(&bucket("ver")).await.unwrap();
    store
        .set_bucket_versioning("ver", Versioning::Enabled)
        .await
        .unwrap();
    let v1 = store
        .put_object(&object("ver", "k", "b1"), &WriteCondition::None)
        .await
        .unwrap();
    let v2 = store
        .put_object(&object("ver", "k", "b2"), &WriteCondition::None)
        .await
        .unwrap();
    assert_ne!(v1, v2);
    // The old version keeps its blob; nothing is garbage.
    assert!(store.garbage_blobs("n1", 10).await.unwrap().is_empty());
    let old = store
        .get_object_version("ver", "k", &v1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(old.segments[0].blob, "b1");
    let marker = store.delete_object("ver", "k").await.unwrap();
    assert!(marker.delete_marker);
    assert!(store.get_object("ver", "k").await.unwrap().is_none());
    let hiding = store
        .latest_delete_marker("ver", "k")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(Some(hiding.version_id.clone()), marker.version_id);
    // Current listing skips the key; the version listing has all three, newest first.
    let query = ListQuery {
        max_keys: 1000,
        ..ListQuery::default()
    };
    assert!(
        store
            .list_objects("ver", &query)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let versions = store
        .list_object_versions("ver", &query, None)
        .await
        .unwrap();
    let listed: Vec<(String, bool, bool)> = versions
        .items
        .iter()
        .map(|v| {
            (
                v.object.version_id.clone(),
                v.is_latest,
                v.object.delete_marker,
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (hiding.version_id.clone(), true, true),
            (v2.clone(), false, false),
            (v1.clone(), false, false),
        ]
    );
    // Removing the marker makes v2 current again; removing v2 then promotes v1.
    store
        .delete_object_version("ver", "k", &hiding.version_id)
        .await
        .unwrap();
    assert_eq!(
        store
            .get_object("ver", "k")
            .await
            .unwrap()
            .unwrap()
            .version_id,
        v2
    );
    store.delete_object_version("ver", "k", &v2).await.unwrap();
    assert_eq!(
        store
            .get_object("ver", "k")
            .await
            .unwrap()
            .unwrap()
            .version_id,
        v1
    );
    assert_eq!(store.garbage_blobs("n1", 10).await.unwrap(), ["b2"]);
    assert!(matches!(
        store.delete_bucket("ver").await,
        Err(MetaError::BucketNotEmpty(_))
    ));
    store.delete_object_version("ver", "k", &v1).await.unwrap();
    store.delete_bucket("ver").await.unwrap();
}

/// Heartbeats and replica bookkeeping run beside request writes all the time; on
/// SQLite a write outside the writer queue made queued transactions fail with
/// "database is locked".
async fn background_writes_never_make_request_writes_fail(store: MetaStore) {
    store.create_bucket(&bucket("busy")).await.unwrap();
    store
        .register_node("n1", "http://a:1", "z", "")
        .await
        .unwrap();
    let beats = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..200 {
                store
                    .heartbeat_node("n1", &NodeProgress::default())
                    .await
                    .unwrap();
                store.remove_replica(&format!("b{i}"), "n1").await.unwrap();
                store.set_node_state("n1", NodeState::Active).await.unwrap();
            }
        })
    };
    let mut writers = Vec::new();
    for w in 0..4 {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..50 {
                let upload = MultipartUpload {
                    upload_id: format!("u{w}-{i}"),
                    bucket: "busy".to_owned(),
                    key: format!("k{i}"),
                    initiated: now_millis(),
                    owner: "o".to_owned(),
                    headers: ObjectHeaders::default(),
                    tags: Default::default(),
                    checksum_algorithm: None,
                    checksum_type: None,
                    lock: Default::default(),
                };
                store.create_multipart_upload(&upload).await.unwrap();
                store
                    .abort_multipart_upload(&upload.upload_id)
                    .await
                    .unwrap();
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    beats.await.unwrap();
}

async fn canned_acls_and_ownership(store: MetaStore) {
    store.create_bucket(&bucket("acl-b")).await.unwrap();
    let fresh = store.bucket_acl("acl-b").await.unwrap();
    assert_eq!(
        (fresh.ownership, &fresh.acl, fresh.public_access_block),
        (
            ObjectOwnership::BucketOwnerEnforced,
            &Acl::canned(CannedAcl::Private),
            None
        ),
        "new buckets: ACLs disabled, private, no Block Public Access of their own"
    );
    assert!(!fresh.owner.is_empty(), "the bucket's owner is reported");
    store
        .set_object_ownership("acl-b", ObjectOwnership::ObjectWriter)
        .await
        .unwrap();
    store
        .set_bucket_canned_acl("acl-b", CannedAcl::PublicRead)
        .await
        .unwrap();
    let settings = store.bucket_acl("acl-b").await.unwrap();
    assert_eq!(settings.ownership, ObjectOwnership::ObjectWriter);
    assert_eq!(settings.acl, Acl::canned(CannedAcl::PublicRead));
    assert!(settings.acl.is_public());
    store
        .set_public_access_block("acl-b", Some(PublicAccessBlock::ALL))
        .await
        .unwrap();
    assert_eq!(
        store.bucket_acl("acl-b").await.unwrap().public_access_block,
        Some(PublicAccessBlock::ALL)
    );
    store.set_public_access_block("acl-b", None).await.unwrap();
    assert_eq!(
        store.bucket_acl("acl-b").await.unwrap().public_access_block,
        None
    );
    store
        .set_object_ownership("acl-b", ObjectOwnership::Unset)
        .await
        .unwrap();
    assert_eq!(
        store.bucket_acl("acl-b").await.unwrap().ownership,
        ObjectOwnership::Unset
    );
    // Object ACLs are per version and survive the version becoming noncurrent.
    store
        .set_bucket_versioning("acl-b", Versioning::Enabled)
        .await
        .unwrap();
    let mut first = object("acl-b", "k", "acl-blob-1");
    first.headers.acl = Some(Acl {
        owner: Some("writer".into()),
        grants: CannedAcl::PublicRead.grants(&Grantee::Owner, &Grantee::User("root".into())),
    });
    let v1 = store
        .put_object(&first, &WriteCondition::None)
        .await
        .unwrap();
    let v2 = store
        .put_object(&object("acl-b", "k", "acl-blob-2"), &WriteCondition::None)
        .await
        .unwrap();
    let acl_of = |v: String| {
        let store = store.clone();
        async move {
            store
                .get_object_version("acl-b", "k", &v)
                .await
                .unwrap()
                .unwrap()
                .headers
                .acl
        }
    };
    assert_eq!(acl_of(v1.clone()).await, first.headers.acl);
    assert_eq!(acl_of(v2.clone()).await, None);
    store
        .set_object_acl(
            "acl-b",
            "k",
            None,
            Acl::canned(CannedAcl::AuthenticatedRead).grants,
        )
        .await
        .unwrap();
    store
        .set_object_acl(
            "acl-b",
            "k",
            Some(&v1),
            Acl::canned(CannedAcl::Private).grants,
        )
        .await
        .unwrap();
    assert_eq!(
        acl_of(v1).await,
        Some(Acl {
            owner: Some("writer".into()),
            grants: Acl::canned(CannedAcl::Private).grants
        }),
        "replacing the grants keeps the writer as owner"
    );
    assert_eq!(
        acl_of(v2).await,
        Some(Acl::canned(CannedAcl::AuthenticatedRead))
    );
    assert!(matches!(
        store
            .set_object_acl("acl-b", "k", Some("nope"), Vec::new())
            .await,
        Err(MetaError::NoSuchVersion)
    ));
    assert!(matches!(
        store
            .set_object_acl("acl-b", "missing", None, Vec::new())
            .await,
        Err(MetaError::NoSuchKey)
    ));
}

/// Object Lock's rules are the store's: every writer (S3 API, operator,
/// lifecycle) goes through them, and a lock and a delete of one version never
/// both succeed however they interleave.
async fn object_lock_rules_hold_in_the_store(store: MetaStore) {
    store
        .create_bucket_with_object_lock(&bucket("lk"))
        .await
        .unwrap();
    assert_eq!(
        store.bucket_versioning("lk").await.unwrap(),
        Versioning::Enabled
    );
    assert!(matches!(
        store
            .set_bucket_versioning("lk", Versioning::Suspended)
            .await,
        Err(MetaError::InvalidBucketState(_))
    ));
    assert!(matches!(
        store.set_bucket_config("lk", OBJECT_LOCK, None).await,
        Err(MetaError::InvalidBucketState(_))
    ));
    let locked = ObjectMeta {
        lock: ObjectLock {
            retention: Some(Retention {
                mode: RetentionMode::Compliance,
                until: now_millis() + 3_600_000,
            }),
            legal_hold: false,
        },
        ..object("lk", "k", "b1")
    };
    let v1 = store
        .put_object(&locked, &WriteCondition::None)
        .await
        .unwrap();
    assert!(matches!(
        store.delete_object_version_with("lk", "k", &v1, true).await,
        Err(MetaError::ObjectLocked)
    ));
    assert!(matches!(
        store
            .set_object_retention("lk", "k", Some(&v1), None, true)
            .await,
        Err(MetaError::ObjectLocked)
    ));
    assert!(
        store
            .get_object_version("lk", "k", &v1)
            .await
            .unwrap()
            .is_some()
    );
    // A bucket without lock takes no locked writes and no lock configuration
    // while unversioned.
    store.create_bucket(&bucket("open")).await.unwrap();
    assert!(matches!(
        store
            .put_object(
                &ObjectMeta {
                    bucket: "open".to_owned(),
                    ..locked.clone()
                },
                &WriteCondition::None
            )
            .await,
        Err(MetaError::ObjectLockNotEnabled)
    ));
    assert!(matches!(
        store
            .set_bucket_object_lock("open", &Default::default())
            .await,
        Err(MetaError::InvalidBucketState(_))
    ));
    // Race a legal hold against a delete of the same noncurrent version.
    for i in 0..20 {
        let key = format!("race-{i}");
        let first = store
            .put_object(
                &object("lk", &key, &format!("r{i}a")),
                &WriteCondition::None,
            )
            .await
            .unwrap();
        store
            .put_object(
                &object("lk", &key, &format!("r{i}b")),
                &WriteCondition::None,
            )
            .await
            .unwrap();
        let hold = {
            let (store, key, v) = (store.clone(), key.clone(), first.clone());
            tokio::spawn(async move {
                store
                    .set_object_legal_hold("lk", &key, Some(&v), true)
                    .await
            })
        };
        let delete = {
            let (store, key, v) = (store.clone(), key.clone(), first.clone());
            tokio::spawn(async move { store.delete_object_version("lk", &key, &v).await })
        };
        let held = hold.await.unwrap();
        let deleted = delete.await.unwrap();
        let exists = store
            .get_object_version("lk", &key, &first)
            .await
            .unwrap()
            .is_some();
        match (held, deleted) {
            (Ok(_), Err(MetaError::ObjectLocked)) => assert!(exists),
            (Err(MetaError::NoSuchVersion), Ok(_)) => assert!(!exists),
            other => panic!("lock and delete both took effect or failed oddly: {other:?}"),
        }
    }
}

/// Concurrent writes where some fail (a create-only write on an existing key, a
/// write to a missing bucket) among many that succeed: on SQLite they share
/// group-commit batches. Each failure undoes exactly its own write, and the
/// usage counters stay exact.
async fn failed_writes_in_a_batch_undo_only_themselves(store: MetaStore) {
    store.create_bucket(&bucket("mixed")).await.unwrap();
    for (key, blob) in [("taken", "first"), ("shared", "shared-0")] {
        store
            .put_object(&object("mixed", key, blob), &WriteCondition::None)
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    for i in 0..80 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let (bucket, key, condition) = match i % 4 {
                0 => ("mixed", "taken".to_owned(), WriteCondition::IfNoneMatchAny),
                1 => ("missing", format!("k{i}"), WriteCondition::None),
                2 => ("mixed", format!("k{i}"), WriteCondition::None),
                _ => ("mixed", "shared".to_owned(), WriteCondition::None),
            };
            let result = store
                .put_object(&object(bucket, &key, &format!("b{i}")), &condition)
                .await;
            (i, result)
        }));
    }
    for task in tasks {
        let (i, result) = task.await.unwrap();
        match i % 4 {
            0 => assert!(
                matches!(result, Err(MetaError::PreconditionFailed)),
                "{i}: {result:?}"
            ),
            1 => assert!(
                matches!(result, Err(MetaError::NoSuchBucket(_))),
                "{i}: {result:?}"
            ),
            _ => assert!(result.is_ok(), "{i}: {result:?}"),
        }
    }
    let taken = store.get_object("mixed", "taken").await.unwrap().unwrap();
    assert_eq!(
        taken.segments[0].blob, "first",
        "create-only writes changed nothing"
    );
    for i in (2..80).step_by(4) {
        let created = store.get_object("mixed", &format!("k{i}")).await.unwrap();
        assert_eq!(created.unwrap().segments[0].blob, format!("b{i}"));
    }
    let usage = store.bucket_usage("mixed").await.unwrap();
    assert_eq!(usage.objects, 22, "taken, shared and the 20 new keys");
    assert_eq!(usage.bytes, 22 * 3);
    let garbage = store.garbage_blobs("n1", 100).await.unwrap();
    assert_eq!(
        garbage.len(),
        20,
        "every replaced version of `shared` is garbage"
    );
}

conformance!(
    object_lock_rules_hold_in_the_store,
    failed_writes_in_a_batch_undo_only_themselves,
    canned_acls_and_ownership,
    background_writes_never_make_request_writes_fail,
    versions_markers_and_garbage,
    nodes_and_replicas,
    buckets_and_configs,
    access_keys,
    object_writes_conditions_and_garbage,
    concurrent_overwrites_leak_no_blob,
    concurrent_writes_across_buckets_all_commit,
    listing_matches_a_brute_force_model,
    multipart_uploads_and_parts,
);

/// Access-key secrets at rest: sealed with the master key (including rows from
/// before the store had one), unreadable without it, a wrong key refused, and
/// rotation moving every secret to the new key.
async fn access_key_secrets_are_sealed_with_the_master_key(url: String) {
    let key = |name: &str, credentials: Option<(&str, &str)>| NewAccessKey {
        name: name.to_owned(),
        owner: "test".to_owned(),
        policy: None,
        is_root: false,
        credentials: credentials.map(|(id, secret)| (id.to_owned(), secret.to_owned())),
    };
    let mut store = MetaStore::connect(&url).await.unwrap();
    // Written before encryption at rest existed: plaintext.
    store
        .create_access_key(&key("old", Some(("OLDKEYID", "old-plaintext-secret"))))
        .await
        .unwrap();
    let master = Key::random();
    store.unlock(master.clone()).await.unwrap();
    let new = store.create_access_key(&key("new", None)).await.unwrap();
    assert_eq!(
        store
            .get_access_key("OLDKEYID")
            .await
            .unwrap()
            .unwrap()
            .secret,
        "old-plaintext-secret"
    );
    assert_eq!(
        store.get_access_key(&new.id).await.unwrap().unwrap().secret,
        new.secret
    );
    // Another process without the key sees sealed rows only.
    let locked = MetaStore::connect(&url).await.unwrap();
    for id in ["OLDKEYID", new.id.as_str()] {
        assert!(matches!(
            locked.get_access_key(id).await,
            Err(MetaError::MasterKeyRequired)
        ));
    }
    let mut other = MetaStore::connect(&url).await.unwrap();
    assert!(matches!(
        other.unlock(Key::random()).await,
        Err(MetaError::WrongMasterKey)
    ));
    // Rotation: the old key stops working, the new one reads everything.
    let newer = Key::random();
    store.rotate_master_key(newer.clone()).await.unwrap();
    let mut with_old = MetaStore::connect(&url).await.unwrap();
    assert!(matches!(
        with_old.unlock(master).await,
        Err(MetaError::WrongMasterKey)
    ));
    let mut with_new = MetaStore::connect(&url).await.unwrap();
    with_new.unlock(newer).await.unwrap();
    assert_eq!(
        with_new
            .get_access_key("OLDKEYID")
            .await
            .unwrap()
            .unwrap()
            .secret,
        "old-plaintext-secret"
    );
    assert_eq!(
        with_new
            .get_access_key(&new.id)
            .await
            .unwrap()
            .unwrap()
            .secret,
        new.secret
    );
}

mod access_key_secrets_are_sealed_with_the_master_key {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        let dir = coffer_testkit::temp_dir("meta");
        let url = format!("sqlite://{}", dir.join("meta.db").display());
        super::access_key_secrets_are_sealed_with_the_master_key(url).await;
        let _ = std::fs::remove_dir_all(&dir);
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::access_key_secrets_are_sealed_with_the_master_key(
            coffer_testkit::postgres_url().await,
        )
        .await
    }
}

/// An access key's last use: noted in memory, seen at once by this store,
/// written by a flush, kept by a store opened later; an older note never
/// moves it back, and a deleted key's note is dropped harmlessly.
async fn access_keys_remember_their_last_use(url: String) {
    let store = MetaStore::connect(&url).await.unwrap();
    let key = store
        .create_access_key(&NewAccessKey {
            name: "app".to_owned(),
            owner: "test".to_owned(),
            policy: None,
            is_root: false,
            credentials: None,
        })
        .await
        .unwrap();
    assert!(store.keys_last_used().await.unwrap().is_empty());
    let before = now_millis();
    store.note_key_used(&key.id);
    let noted = store.keys_last_used().await.unwrap()[&key.id];
    assert!(noted >= before, "{noted} < {before}");
    store.note_key_used("gone");
    store.flush_key_use().await.unwrap();
    store.close().await;

    let reopened = MetaStore::connect(&url).await.unwrap();
    let stored = reopened.keys_last_used().await.unwrap();
    assert_eq!(stored.get(&key.id), Some(&noted));
    assert!(!stored.contains_key("gone"));

    // Two servers: the one that noted earlier writes last, and loses.
    let other = MetaStore::connect(&url).await.unwrap();
    reopened.note_key_used(&key.id);
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    other.note_key_used(&key.id);
    let latest = other.keys_last_used().await.unwrap()[&key.id];
    other.flush_key_use().await.unwrap();
    reopened.flush_key_use().await.unwrap();
    assert!(latest > noted);
    assert_eq!(
        other.keys_last_used().await.unwrap().get(&key.id),
        Some(&latest)
    );
    other.close().await;
    reopened.close().await;
}

mod access_keys_remember_their_last_use {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        let dir = coffer_testkit::temp_dir("meta");
        let url = format!("sqlite://{}", dir.join("meta.db").display());
        super::access_keys_remember_their_last_use(url).await;
        let _ = std::fs::remove_dir_all(&dir);
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::access_keys_remember_their_last_use(coffer_testkit::postgres_url().await).await
    }
}
