//! The web console against a real in-process server. One test drives it with
//! headless Chromium over the DevTools protocol (on a pipe: no WebSocket
//! client needed): log in, create a bucket, upload by the file input (two
//! small files, one large by multipart), browse, download, share, delete,
//! change bucket settings, create a read-only key and log in as it. The
//! others use raw HTTP: CSRF, session expiry, login rate limiting.
//!
//! Screenshots land in a temporary directory, or in `docs/images/` when
//! `COFFER_UPDATE_SCREENSHOTS=1`. Needs Chromium like `browser.rs`.

#[path = "s3_api/common.rs"]
mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Mutex, oneshot};

use common::{Backend, TestServer};

fn chromium() -> String {
    if let Ok(path) = std::env::var("COFFER_CHROMIUM") {
        return path;
    }
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        let found = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {name}"))
            .output()
            .is_ok_and(|o| o.status.success());
        if found {
            return name.to_owned();
        }
    }
    panic!(
        "no Chromium found: install it (`apt-get install -y chromium`, as .ci/run does) \
         or point COFFER_CHROMIUM at a Chrome/Chromium binary"
    );
}

async fn console_server(tweak: impl FnOnce(&mut coffer_server::serve::ServeConfig)) -> TestServer {
    TestServer::start_with(Backend::Sqlite, |config| {
        config.console.listen = Some("127.0.0.1:0".parse().unwrap());
        tweak(config);
    })
    .await
}

fn console_url(t: &TestServer) -> String {
    format!(
        "http://{}",
        t.server.console_addr().expect("console listens")
    )
}

// ---------- a DevTools-protocol client over --remote-debugging-pipe ----------

type Pending = Arc<std::sync::Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

struct Browser {
    child: tokio::process::Child,
    commands: Mutex<tokio::process::ChildStdin>,
    pending: Pending,
    next_id: AtomicU64,
    _profile: Profile,
}

/// Chromium's profile directory, removed however the test ends.
struct Profile(PathBuf);

impl Drop for Profile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Browser {
    async fn launch() -> Arc<Browser> {
        let profile = Profile(coffer_testkit::temp_dir("chromium-console"));
        // Chromium reads commands on fd 3 and writes answers on fd 4: the
        // shell wires them to our stdin/stdout pipes.
        let mut command = tokio::process::Command::new("sh");
        command
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>/dev/null"#)
            .arg(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--remote-debugging-pipe",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.0.display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("chromium starts");
        let commands = child.stdin.take().expect("stdin");
        let mut answers = child.stdout.take().expect("stdout");
        let pending: Pending = Arc::default();
        let routes = pending.clone();
        tokio::spawn(async move {
            let mut buffer = Vec::new();
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                let n = match answers.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                buffer.extend_from_slice(&chunk[..n]);
                while let Some(end) = buffer.iter().position(|b| *b == 0) {
                    let message: Vec<u8> = buffer.drain(..=end).collect();
                    let Ok(value) = serde_json::from_slice::<Value>(&message[..end]) else {
                        continue;
                    };
                    if let Some(id) = value.get("id").and_then(Value::as_u64)
                        && let Some(sender) = routes.lock().unwrap().remove(&id)
                    {
                        let _ = sender.send(value);
                    }
                }
            }
        });
        Arc::new(Browser {
            child,
            commands: Mutex::new(commands),
            pending,
            next_id: AtomicU64::new(1),
            _profile: profile,
        })
    }

    async fn send(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        {
            let mut commands = self.commands.lock().await;
            commands.write_all(&bytes).await.expect("write to chromium");
            commands.flush().await.expect("flush to chromium");
        }
        let answer = tokio::time::timeout(Duration::from_secs(60), rx)
            .await
            .unwrap_or_else(|_| panic!("chromium did not answer {method} within 60 s"))
            .expect("chromium answered");
        if let Some(error) = answer.get("error") {
            panic!("{method} failed: {error}");
        }
        answer["result"].clone()
    }

    async fn new_page(self: &Arc<Self>) -> Page {
        let target = self
            .send(None, "Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let attached = self
            .send(
                None,
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        Page {
            browser: self.clone(),
            session: attached["sessionId"].as_str().unwrap().to_owned(),
        }
    }
}

struct Page {
    browser: Arc<Browser>,
    session: String,
}

impl Page {
    async fn send(&self, method: &str, params: Value) -> Value {
        self.browser.send(Some(&self.session), method, params).await
    }

    async fn goto(&self, url: &str) {
        self.send("Page.navigate", json!({"url": url})).await;
    }

    /// Evaluates an expression (awaiting promises); `Err` carries a thrown
    /// exception's text.
    async fn try_eval(&self, expression: &str) -> Result<Value, String> {
        let result = self
            .send(
                "Runtime.evaluate",
                json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
            )
            .await;
        match result.get("exceptionDetails") {
            Some(details) => Err(details.to_string()),
            None => Ok(result["result"]["value"].clone()),
        }
    }

    async fn eval(&self, expression: &str) -> Value {
        self.try_eval(expression)
            .await
            .unwrap_or_else(|e| panic!("{expression} threw: {e}"))
    }

    /// Polls until `condition` is truthy (30 s at most).
    async fn wait_for(&self, condition: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Value::Bool(true)) = self.try_eval(&format!("!!({condition})")).await {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                let page = self
                    .try_eval("document.body ? document.body.innerText : ''")
                    .await
                    .unwrap_or_default();
                panic!("timed out waiting for {condition}; the page shows:\n{page}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn click(&self, selector: &str) {
        self.wait_for(&format!("document.querySelector({})", js(selector)))
            .await;
        self.eval(&format!("document.querySelector({}).click()", js(selector)))
            .await;
    }

    async fn fill(&self, selector: &str, value: &str) {
        self.wait_for(&format!("document.querySelector({})", js(selector)))
            .await;
        self.eval(&format!(
            "(() => {{ const el = document.querySelector({}); el.value = {}; \
             el.dispatchEvent(new Event('input', {{bubbles: true}})); \
             el.dispatchEvent(new Event('change', {{bubbles: true}})); }})()",
            js(selector),
            js(value)
        ))
        .await;
    }

    async fn text(&self, selector: &str) -> String {
        self.eval(&format!(
            "(document.querySelector({}) || {{}}).textContent || ''",
            js(selector)
        ))
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// Chooses files in a file input, as a user would in the file picker.
    async fn set_files(&self, selector: &str, files: &[&Path]) {
        self.wait_for(&format!("document.querySelector({})", js(selector)))
            .await;
        let element = self
            .send(
                "Runtime.evaluate",
                json!({"expression": format!("document.querySelector({})", js(selector))}),
            )
            .await;
        let files: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
        self.send(
            "DOM.setFileInputFiles",
            json!({"files": files, "objectId": element["result"]["objectId"]}),
        )
        .await;
    }

    async fn screenshot(&self, dir: &Path, name: &str) {
        let shot = self
            .send("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG image");
        std::fs::write(dir.join(format!("console-{name}.png")), png).unwrap();
    }

    async fn hash(&self, hash: &str) {
        self.eval(&format!("location.hash = {}", js(hash))).await;
    }
}

fn js(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

async fn login(page: &Page, url: &str, id: &str, secret: &str) {
    page.goto(url).await;
    page.wait_for("document.body.dataset.ready === 'login'")
        .await;
    page.fill("#login-id", id).await;
    page.fill("#login-secret", secret).await;
    page.eval("document.getElementById('login').requestSubmit()")
        .await;
    page.wait_for("document.getElementById('who').textContent.length > 0 && document.querySelector('#create-bucket')")
        .await;
}

fn screenshot_dir() -> (PathBuf, bool) {
    if std::env::var("COFFER_UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/images");
        std::fs::create_dir_all(&dir).unwrap();
        (dir, false)
    } else {
        (coffer_testkit::temp_dir("console-shots"), true)
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_drives_the_console_as_root_and_as_a_read_only_key() {
    let t = console_server(|_| {}).await;
    let s3 = t.root_client();
    let url = console_url(&t);
    let root = t.server.root_key().clone();
    let (shots, temporary_shots) = screenshot_dir();
    let files = coffer_testkit::temp_dir("console-files");
    let small_a = b"hello from the console".to_vec();
    let small_b: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let large: Vec<u8> = (0..(12u32 << 20)).map(|i| (i % 253) as u8).collect();
    std::fs::write(files.join("a.txt"), &small_a).unwrap();
    std::fs::write(files.join("b.bin"), &small_b).unwrap();
    std::fs::write(files.join("big.bin"), &large).unwrap();

    let browser = Browser::launch().await;
    let page = browser.new_page().await;

    // Log in as root.
    page.goto(&url).await;
    page.wait_for("document.body.dataset.ready === 'login'")
        .await;
    page.screenshot(&shots, "login").await;
    login(&page, &url, &root.id, &root.secret).await;

    // Create a bucket: the browser lands in it.
    page.fill("#new-bucket", "photos").await;
    page.eval("document.getElementById('create-bucket').requestSubmit()")
        .await;
    page.wait_for(
        "document.body.dataset.ready === '#/b/photos/' && document.querySelector('#file-input')",
    )
    .await;
    s3.head_bucket().bucket("photos").send().await.unwrap();

    // Two files by the file input, into a prefix.
    page.hash("#/b/photos/docs/").await;
    page.wait_for("document.body.dataset.ready === '#/b/photos/docs/'")
        .await;
    page.set_files("#file-input", &[&files.join("a.txt"), &files.join("b.bin")])
        .await;
    page.wait_for("document.querySelector('tr[data-key=\"docs/a.txt\"]') && document.querySelector('tr[data-key=\"docs/b.bin\"]')")
        .await;

    // One large file by multipart, with its progress bar moving.
    page.hash("#/b/photos/").await;
    page.wait_for(
        "document.body.dataset.ready === '#/b/photos/' && document.querySelector('a.folder-link')",
    )
    .await;
    page.eval(
        "window.__seen = []; window.__rec = setInterval(() => { \
         const p = document.querySelector('li.upload[data-key=\"big.bin\"] progress'); \
         const s = document.querySelector('li.upload[data-key=\"big.bin\"] .status'); \
         if (p) window.__seen.push([p.value, p.max, s ? s.textContent : '']); }, 5)",
    )
    .await;
    page.set_files("#file-input", &[&files.join("big.bin")])
        .await;
    page.wait_for("document.querySelector('tr[data-key=\"big.bin\"]')")
        .await;
    let seen = page
        .eval("clearInterval(window.__rec); window.__seen")
        .await;
    let seen = seen.as_array().unwrap();
    let size = large.len() as f64;
    assert!(
        seen.iter().any(|s| {
            let v = s[0].as_f64().unwrap_or(0.0);
            v > 0.0 && v < size
        }),
        "the progress bar showed partial progress: {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|s| s[2].as_str().unwrap_or("").contains("part 2 of 3")),
        "uploaded in parts: {seen:?}"
    );
    let head = s3
        .head_object()
        .bucket("photos")
        .key("big.bin")
        .send()
        .await
        .unwrap();
    assert!(
        head.e_tag().unwrap().ends_with("-3\""),
        "a 3-part multipart upload: {:?}",
        head.e_tag()
    );
    assert_eq!(head.content_length(), Some(large.len() as i64));
    page.screenshot(&shots, "bucket").await;

    // Browse into the prefix by its folder link.
    page.click("a.folder-link").await;
    page.wait_for("document.body.dataset.ready === '#/b/photos/docs/' && document.querySelector('tr[data-key=\"docs/b.bin\"]')")
        .await;
    assert!(page.text("nav.crumbs").await.contains("docs"));
    page.screenshot(&shots, "prefix").await;

    // Download: the link's bytes are the file's.
    let downloaded = page
        .eval(
            "(async () => { const a = document.querySelector('tr[data-key=\"docs/b.bin\"] a.download'); \
             const r = await fetch(a.href); const buf = await r.arrayBuffer(); \
             const d = await crypto.subtle.digest('SHA-256', buf); \
             return [r.status, r.headers.get('content-disposition'), \
               [...new Uint8Array(d)].map(b => b.toString(16).padStart(2, '0')).join('')]; })()",
        )
        .await;
    assert_eq!(downloaded[0], 200);
    assert!(
        downloaded[1].as_str().unwrap().starts_with("attachment"),
        "{downloaded}"
    );
    assert_eq!(downloaded[2].as_str().unwrap(), sha256_hex(&small_b));

    // Share: a presigned link that works without the console.
    page.click("tr[data-key=\"docs/a.txt\"] button.share").await;
    page.fill("#share-expiry", "3600").await;
    page.click("#share-create").await;
    page.wait_for("document.getElementById('share-url').value.startsWith('http')")
        .await;
    let link = page
        .eval("document.getElementById('share-url').value")
        .await;
    let link = link.as_str().unwrap();
    assert!(link.contains("X-Amz-Expires=3600"), "{link}");
    page.screenshot(&shots, "share").await;
    let fetched = reqwest::get(link).await.unwrap();
    assert_eq!(fetched.status(), 200);
    assert_eq!(&fetched.bytes().await.unwrap()[..], &small_a[..]);

    // Delete, with confirmation.
    page.click("tr[data-key=\"docs/a.txt\"] button.delete")
        .await;
    page.click("#confirm-yes").await;
    page.wait_for("document.body.dataset.ready === '#/b/photos/docs/' && !document.querySelector('tr[data-key=\"docs/a.txt\"]') && document.querySelector('tr[data-key=\"docs/b.bin\"]')")
        .await;
    let gone = s3
        .head_object()
        .bucket("photos")
        .key("docs/a.txt")
        .send()
        .await;
    assert!(gone.is_err(), "docs/a.txt was deleted");

    // Settings: versioning and a lifecycle rule.
    page.hash("#/s/photos").await;
    page.wait_for("document.querySelector('#save-versioning')")
        .await;
    page.fill("#versioning", "Enabled").await;
    page.click("#save-versioning").await;
    page.wait_for("document.getElementById('versioning-status') && document.getElementById('versioning-status').textContent === 'Enabled'")
        .await;
    let versioning = s3
        .get_bucket_versioning()
        .bucket("photos")
        .send()
        .await
        .unwrap();
    assert_eq!(versioning.status().map(|s| s.as_str()), Some("Enabled"));
    page.fill("#lc-id", "expire-logs").await;
    page.fill("#lc-prefix", "logs/").await;
    page.fill("#lc-days", "7").await;
    page.click("#lc-add").await;
    page.wait_for("document.getElementById('lifecycle-rules') && document.getElementById('lifecycle-rules').textContent.includes('expire-logs')")
        .await;
    let lifecycle = s3
        .get_bucket_lifecycle_configuration()
        .bucket("photos")
        .send()
        .await
        .unwrap();
    let rule = &lifecycle.rules()[0];
    assert_eq!(rule.id(), Some("expire-logs"));
    assert_eq!(rule.expiration().and_then(|e| e.days()), Some(7));
    // A policy that is not JSON is refused in the page, with the reason.
    page.fill("#policy", "{not json").await;
    page.click("#save-policy").await;
    page.wait_for("document.getElementById('policy-error').textContent.startsWith('JSON')")
        .await;
    page.screenshot(&shots, "settings").await;

    // Object Lock: a bucket created with it gets a default retention from the
    // settings page, then loses it again.
    s3.create_bucket()
        .bucket("ledger")
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .unwrap();
    page.hash("#/s/ledger").await;
    page.wait_for("document.querySelector('#save-lock')").await;
    page.fill("#lock-mode", "GOVERNANCE").await;
    page.fill("#lock-period", "3").await;
    page.fill("#lock-unit", "Days").await;
    page.click("#save-lock").await;
    page.wait_for("document.getElementById('lock-status') && document.getElementById('lock-status').textContent === 'default retention GOVERNANCE, 3 days'")
        .await;
    let lock = s3
        .get_object_lock_configuration()
        .bucket("ledger")
        .send()
        .await
        .unwrap();
    let retention = lock
        .object_lock_configuration()
        .and_then(|c| c.rule())
        .and_then(|r| r.default_retention())
        .expect("a default retention");
    assert_eq!(retention.mode().map(|m| m.as_str()), Some("GOVERNANCE"));
    assert_eq!(retention.days(), Some(3));
    page.fill("#lock-mode", "").await;
    page.click("#save-lock").await;
    page.wait_for("document.getElementById('lock-status') && document.getElementById('lock-status').textContent === 'no default retention'")
        .await;
    let lock = s3
        .get_object_lock_configuration()
        .bucket("ledger")
        .send()
        .await
        .unwrap();
    assert!(
        lock.object_lock_configuration()
            .and_then(|c| c.rule())
            .is_none(),
        "the default retention was removed: {lock:?}"
    );

    // Quota: root limits a bucket to one object from its settings page; the
    // next PUT is refused with QuotaExceeded, and once removed it is taken.
    s3.create_bucket().bucket("limited").send().await.unwrap();
    s3.put_object()
        .bucket("limited")
        .key("one")
        .body(b"1".to_vec().into())
        .send()
        .await
        .unwrap();
    page.hash("#/s/limited").await;
    // The page before was another bucket's settings: wait for this one's.
    page.wait_for(
        "document.querySelector('h1')?.textContent === 'Settings of limited' \
         && document.querySelector('#save-quota')",
    )
    .await;
    page.fill("#quota-objects", "1").await;
    page.click("#save-quota").await;
    page.wait_for("document.body.textContent.includes('at most 1 objects')")
        .await;
    let refused = s3
        .put_object()
        .bucket("limited")
        .key("two")
        .body(b"2".to_vec().into())
        .send()
        .await
        .expect_err("over quota");
    assert_eq!(
        refused.as_service_error().and_then(|e| e.meta().code()),
        Some("QuotaExceeded"),
        "{refused:?}"
    );
    page.fill("#quota-objects", "").await;
    page.click("#save-quota").await;
    page.wait_for("!document.body.textContent.includes('at most 1 objects') && document.querySelector('#save-quota')")
        .await;
    s3.put_object()
        .bucket("limited")
        .key("two")
        .body(b"2".to_vec().into())
        .send()
        .await
        .expect("the quota is gone");

    // A 1,000-object page: how long until it is painted (printed, not asserted).
    let many = s3.clone();
    futures::future::join_all((0..1000).map(|i| {
        let many = many.clone();
        async move {
            many.put_object()
                .bucket("photos")
                .key(format!("many/object-{i:04}.txt"))
                .body(format!("object {i}").into_bytes().into())
                .send()
                .await
                .unwrap();
        }
    }))
    .await;
    // First paint: the frame after the folder's first rows are in the table
    // (seen by a MutationObserver as they are inserted); then the frame after
    // all 1,000 are. The listing call's timing and the
    // page's own count (call to first rows built) show where the time goes.
    let paint = page
        .eval(
            "new Promise((resolve) => { const t0 = performance.now(); let first = null; location.hash = '#/b/photos/many/'; \
             const seen = new MutationObserver(() => { \
               if (first === null && document.querySelector('#objects tbody tr[data-key^=\"many/\"]')) { \
                 first = -1; seen.disconnect(); requestAnimationFrame(() => { first = performance.now() - t0; }); } }); \
             seen.observe(document.body, { childList: true, subtree: true }); \
             const check = () => { \
               if (first !== null && first >= 0 && document.body.dataset.ready === '#/b/photos/many/' && \
                 document.querySelectorAll('#objects tbody tr').length === 1000) \
                 requestAnimationFrame(() => { window.paintT0 = t0; resolve([first, performance.now() - t0]); }); \
               else setTimeout(check, 1); }; check(); })",
        )
        .await;
    println!(
        "first paint of a 1,000-object listing: {:.0} ms (all 1,000 rows painted: {:.0} ms)",
        paint[0].as_f64().unwrap(),
        paint[1].as_f64().unwrap()
    );
    let fetch_ms = page
        .eval(
            "(() => { const r = performance.getEntriesByType('resource').filter(e => e.name.includes('many')); \
             return r.length ? [r[r.length - 1].startTime - window.paintT0, r[r.length - 1].duration] : -1; })()",
        )
        .await;
    println!("  the listing request [started after, took]: {fetch_ms} ms");
    let built = page
        .eval("document.getElementById('listing-time').textContent")
        .await;
    println!("  the page's own count (request to first rows built): {built}");

    // Administration: a read-only key for this bucket, its secret shown once.
    page.hash("#/keys").await;
    page.wait_for("document.querySelector('#key-create')").await;
    page.fill("#key-name", "photo-reader").await;
    page.fill("#key-template", "read-only").await;
    page.fill("#key-buckets", "photos").await;
    page.eval("document.getElementById('new-key').requestSubmit()")
        .await;
    page.wait_for("document.getElementById('created-key-secret')")
        .await;
    let reader_id = page.text("#created-key-id").await;
    let reader_secret = page.text("#created-key-secret").await;
    assert!(!reader_secret.is_empty());
    // Last used: the root key signed every request so far, the new key none.
    let last_used = |id: &str| {
        format!(
            "(document.querySelector('tr[data-key-id=\"{id}\"] .last-used') || {{}}).textContent"
        )
    };
    assert_eq!(page.eval(&last_used(&reader_id)).await, json!("never"));
    let root_used = page.eval(&last_used(&t.server.root_key().id)).await;
    assert!(
        root_used.as_str().is_some_and(|s| s.ends_with(" UTC")),
        "{root_used}"
    );
    page.screenshot(&shots, "keys").await;

    page.hash("#/cluster").await;
    page.wait_for("document.querySelector('#nodes tbody tr') && document.querySelector('#chart-rps polyline').getAttribute('points') && document.querySelector('#chart-out polyline').getAttribute('points')")
        .await;
    // The node's data volume, from its heartbeat (statvfs of the data directory).
    let volume = page.text("#nodes tbody tr .volume").await;
    assert!(volume.contains(" free of "), "{volume}");
    page.screenshot(&shots, "cluster").await;

    // Another bucket the reader's key may not see.
    s3.create_bucket().bucket("other").send().await.unwrap();

    // Log out; log in as the read-only key.
    page.click("#logout").await;
    page.wait_for("document.body.dataset.ready === 'login'")
        .await;
    login(&page, &url, &reader_id, &reader_secret).await;
    let visible = page
        .eval("[...document.querySelectorAll('a.bucket-link')].map(a => a.textContent)")
        .await;
    assert_eq!(
        visible,
        json!(["photos"]),
        "a scoped key sees only its bucket"
    );
    // Reads work, writes are refused with the S3 error.
    page.hash("#/b/photos/docs/").await;
    page.wait_for("document.body.dataset.ready === '#/b/photos/docs/' && document.querySelector('tr[data-key=\"docs/b.bin\"]')")
        .await;
    page.set_files("#file-input", &[&files.join("a.txt")]).await;
    page.wait_for("document.querySelector('li.upload.failed')")
        .await;
    let status = page.text("li.upload.failed .status").await;
    assert!(status.starts_with("AccessDenied"), "{status}");
    page.screenshot(&shots, "denied").await;
    page.click("tr[data-key=\"docs/b.bin\"] button.delete")
        .await;
    page.click("#confirm-yes").await;
    page.wait_for("!document.getElementById('error').hidden")
        .await;
    let error = page.text("#error").await;
    assert!(error.starts_with("AccessDenied"), "{error}");
    s3.head_object()
        .bucket("photos")
        .key("docs/b.bin")
        .send()
        .await
        .expect("the read-only key deleted nothing");
    page.hash("#/keys").await;
    page.wait_for("document.body.dataset.ready === '#/keys'")
        .await;
    assert!(
        page.text("#page-error").await.starts_with("AccessDenied"),
        "administration needs root"
    );

    // The narrow layout.
    page.send(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 390, "height": 800, "deviceScaleFactor": 1, "mobile": true}),
    )
    .await;
    page.hash("#/b/photos/docs/").await;
    page.wait_for("document.body.dataset.ready === '#/b/photos/docs/'")
        .await;
    page.screenshot(&shots, "narrow").await;

    drop(page);
    if let Ok(mut browser) = Arc::try_unwrap(browser) {
        let _ = browser.child.kill().await;
    }
    if temporary_shots {
        let _ = std::fs::remove_dir_all(&shots);
    }
    let _ = std::fs::remove_dir_all(&files);
    t.stop().await;
}

// ---------- raw HTTP ----------

struct Login {
    cookie: String,
    csrf: String,
    set_cookie: String,
}

async fn raw_login(http: &reqwest::Client, url: &str, id: &str, secret: &str) -> reqwest::Response {
    http.post(format!("{url}/api/login"))
        .header("content-type", "application/json")
        .body(json!({"accessKeyId": id, "secretAccessKey": secret}).to_string())
        .send()
        .await
        .unwrap()
}

async fn logged_in(http: &reqwest::Client, url: &str, t: &TestServer) -> Login {
    let root = t.server.root_key();
    logged_in_as(http, url, &root.id, &root.secret).await
}

async fn logged_in_as(http: &reqwest::Client, url: &str, id: &str, secret: &str) -> Login {
    let response = raw_login(http, url, id, secret).await;
    assert_eq!(response.status(), 200);
    let set_cookie = response
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    Login {
        cookie,
        csrf: body["csrf"].as_str().unwrap().to_owned(),
        set_cookie,
    }
}

async fn code_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value =
        serde_json::from_slice(&response.bytes().await.unwrap_or_default()).unwrap_or(Value::Null);
    (status, body["code"].as_str().unwrap_or("").to_owned())
}

#[tokio::test]
async fn state_changing_requests_need_the_csrf_token() {
    let started = coffer_server::meta::now_millis();
    let t = console_server(|_| {}).await;
    let url = console_url(&t);
    let http = reqwest::Client::new();
    let session = logged_in(&http, &url, &t).await;
    assert!(
        session.set_cookie.contains("HttpOnly"),
        "{}",
        session.set_cookie
    );
    assert!(session.set_cookie.contains("SameSite=Strict"));
    assert!(!session.set_cookie.contains("Secure"), "plain HTTP");

    // Without the token, or with another, nothing is created.
    for token in [None, Some("0".repeat(64))] {
        let mut request = http
            .put(format!("{url}/api/s3/csrf-bucket"))
            .header("cookie", &session.cookie);
        if let Some(token) = &token {
            request = request.header("x-csrf-token", token);
        }
        let (status, code) = code_of(request.send().await.unwrap()).await;
        assert_eq!((status, code.as_str()), (403, "InvalidCsrfToken"));
    }
    let s3 = t.root_client();
    assert!(s3.head_bucket().bucket("csrf-bucket").send().await.is_err());
    let presign = http
        .post(format!("{url}/api/presign"))
        .header("cookie", &session.cookie)
        .body(json!({"bucket": "b", "key": "k", "expiresSeconds": 60}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(presign).await.1, "InvalidCsrfToken");
    let logout = http
        .post(format!("{url}/api/logout"))
        .header("cookie", &session.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(logout).await.1, "InvalidCsrfToken");

    // With it, the request goes through (as the session's key).
    let created = http
        .put(format!("{url}/api/s3/csrf-bucket"))
        .header("cookie", &session.cookie)
        .header("x-csrf-token", &session.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);
    s3.head_bucket().bucket("csrf-bucket").send().await.unwrap();
    // Reads need the session, not the token.
    let listed = http
        .get(format!("{url}/api/buckets"))
        .header("cookie", &session.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    let listed: Value = serde_json::from_slice(&listed.bytes().await.unwrap()).unwrap();
    assert_eq!(listed["buckets"][0]["name"], "csrf-bucket");
    // The quota endpoint: a limit of 0 is refused, an unknown bucket is 404,
    // a Kubernetes-managed bucket is 409, and without the token nothing changes.
    let quota = |bucket: &str, body: Value, token: Option<&str>| {
        let mut request = http
            .put(format!("{url}/api/admin/buckets/{bucket}/quota"))
            .header("cookie", &session.cookie)
            .body(body.to_string());
        if let Some(token) = token {
            request = request.header("x-csrf-token", token);
        }
        request.send()
    };
    let csrf = Some(session.csrf.as_str());
    for (bucket, body, token, expected) in [
        (
            "csrf-bucket",
            json!({"maxObjects": 5}),
            None,
            (403, "InvalidCsrfToken"),
        ),
        (
            "csrf-bucket",
            json!({"maxObjects": 0}),
            csrf,
            (400, "InvalidArgument"),
        ),
        (
            "no-such",
            json!({"maxObjects": 5}),
            csrf,
            (404, "NoSuchBucket"),
        ),
    ] {
        let (status, code) = code_of(quota(bucket, body, token).await.unwrap()).await;
        assert_eq!((status, code.as_str()), expected, "{bucket}");
    }
    assert_eq!(
        t.server.meta().bucket_quota("csrf-bucket").await.unwrap(),
        None
    );
    let set = quota(
        "csrf-bucket",
        json!({"maxSizeBytes": 1024, "maxObjects": 5}),
        csrf,
    );
    assert_eq!(set.await.unwrap().status(), 200);
    let stored = t.server.meta().bucket_quota("csrf-bucket").await.unwrap();
    assert_eq!(
        stored.map(|q| (q.max_size_bytes, q.max_objects)),
        Some((Some(1024), Some(5)))
    );
    t.server
        .meta()
        .set_bucket_owner("csrf-bucket", "k8s:team/data")
        .await
        .unwrap();
    let managed = quota("csrf-bucket", json!({"maxObjects": null}), csrf);
    let (status, code) = code_of(managed.await.unwrap()).await;
    assert_eq!((status, code.as_str()), (409, "ManagedByKubernetes"));
    assert!(
        t.server
            .meta()
            .bucket_quota("csrf-bucket")
            .await
            .unwrap()
            .is_some()
    );

    // The keys list says when each key last signed a request: the root key
    // just did, through the console.
    let keys = http
        .get(format!("{url}/api/admin/keys"))
        .header("cookie", &session.cookie)
        .send()
        .await
        .unwrap();
    let keys: Value = serde_json::from_slice(&keys.bytes().await.unwrap()).unwrap();
    let root_id = t.server.root_key().id.clone();
    let root = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == root_id.as_str())
        .unwrap();
    let used = root["lastUsed"].as_i64().unwrap_or(0);
    assert!(
        (started..=coffer_server::meta::now_millis()).contains(&used),
        "{root}"
    );

    // No session: nothing at all.
    let anonymous = http
        .get(format!("{url}/api/s3/csrf-bucket"))
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(anonymous).await, (401, "NotLoggedIn".to_owned()));

    // Logout ends the session server-side: the old cookie is worthless.
    let logout = http
        .post(format!("{url}/api/logout"))
        .header("cookie", &session.cookie)
        .header("x-csrf-token", &session.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 200);
    let after = http
        .get(format!("{url}/api/buckets"))
        .header("cookie", &session.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(after).await.0, 401);
    t.stop().await;
}

#[tokio::test]
async fn sessions_expire() {
    let t = console_server(|config| {
        config.console.session_ttl = Duration::from_secs(1);
    })
    .await;
    let url = console_url(&t);
    let http = reqwest::Client::new();
    let session = logged_in(&http, &url, &t).await;
    let fresh = http
        .get(format!("{url}/api/session"))
        .header("cookie", &session.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let expired = http
        .get(format!("{url}/api/s3/"))
        .header("cookie", &session.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(expired).await, (401, "NotLoggedIn".to_owned()));
    t.stop().await;
}

#[tokio::test]
async fn failed_logins_are_rate_limited() {
    let t = console_server(|config| {
        config.console.max_login_failures = 3;
    })
    .await;
    let url = console_url(&t);
    let http = reqwest::Client::new();
    let root = t.server.root_key().clone();
    for _ in 0..3 {
        let (status, code) = code_of(raw_login(&http, &url, &root.id, "wrong").await).await;
        assert_eq!((status, code.as_str()), (403, "InvalidAccessKeyId"));
    }
    // Now even the right secret waits.
    let blocked = raw_login(&http, &url, &root.id, &root.secret).await;
    assert!(blocked.headers().contains_key("retry-after"));
    assert_eq!(code_of(blocked).await, (429, "SlowDown".to_owned()));
    t.stop().await;
}

#[tokio::test]
async fn the_console_serves_its_page_and_assets_with_a_strict_policy() {
    let t = console_server(|_| {}).await;
    let url = console_url(&t);
    let mut weight = 0;
    for (path, kind) in [
        ("/", "text/html"),
        ("/assets/app.js", "text/javascript"),
        ("/assets/app.css", "text/css"),
    ] {
        let response = reqwest::get(format!("{url}{path}")).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        assert!(
            headers["content-type"].to_str().unwrap().starts_with(kind),
            "{path}"
        );
        assert!(
            headers["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("default-src 'self'")
        );
        weight += response.bytes().await.unwrap().len();
    }
    println!("console page weight (uncompressed): {weight} bytes");
    t.stop().await;
}

/// A key whose policy allows some administration gets exactly that: keys
/// listed and deleted where allowed, keys created from templates only for the
/// buckets its policy names, quotas where allowed, the cluster view — never
/// policy JSON, never a key its Deny protects.
#[tokio::test]
async fn a_delegated_administrator_does_only_what_its_policy_allows() {
    let t = console_server(|_| {}).await;
    let url = console_url(&t);
    let http = reqwest::Client::new();
    let s3 = t.root_client();
    for bucket in ["team-a", "other"] {
        s3.create_bucket().bucket(bucket).send().await.unwrap();
    }
    let meta = t.server.meta();
    let victim = t.key_with_policy("victim", None).await;
    let protected = t.key_with_policy("protected", None).await;
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["iam:ListAccessKeys", "iam:DeleteAccessKey", "coffer:GetClusterStatus"], "Resource": "*"},
        {"Effect": "Allow", "Action": ["iam:CreateAccessKey", "coffer:PutBucketQuota"], "Resource": "arn:aws:s3:::team-*"},
        {"Effect": "Deny", "Action": "iam:DeleteAccessKey", "Resource": format!("arn:aws:iam::coffer:user/{}", protected.id)},
    ]});
    let delegate = t
        .key_with_policy("delegate", Some(&policy.to_string()))
        .await;
    let session = logged_in_as(&http, &url, &delegate.id, &delegate.secret).await;
    let call = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut request = http
            .request(method, format!("{url}{path}"))
            .header("cookie", &session.cookie)
            .header("x-csrf-token", &session.csrf);
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        request.send()
    };
    let me: Value = serde_json::from_slice(
        &call(reqwest::Method::GET, "/api/session", None)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(me["admin"], json!({"keys": true, "cluster": true}), "{me}");
    assert_eq!(me["root"], false);

    let listed = call(reqwest::Method::GET, "/api/admin/keys", None)
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    let cluster = call(reqwest::Method::GET, "/api/admin/cluster", None)
        .await
        .unwrap();
    assert_eq!(cluster.status(), 200);

    // Keys from templates for team-* buckets only; policy JSON is root's.
    let create = |template: &str, bucket: &str| {
        call(
            reqwest::Method::POST,
            "/api/admin/keys",
            Some(
                json!({"name": "made", "template": template, "buckets": [bucket],
                        "policy": r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#}),
            ),
        )
    };
    let made = create("read-only", "team-a").await.unwrap();
    assert_eq!(made.status(), 201);
    let made: Value = serde_json::from_slice(&made.bytes().await.unwrap()).unwrap();
    for (template, bucket, expected) in [
        ("read-write", "other", (403, "AccessDenied")),
        ("json", "team-a", (403, "AccessDenied")),
        // A wildcard could reach a bucket a Deny protects: names are exact.
        ("read-only", "team-*", (400, "InvalidBucketName")),
    ] {
        let (status, code) = code_of(create(template, bucket).await.unwrap()).await;
        assert_eq!((status, code.as_str()), expected, "{template} {bucket}");
    }
    // The key it made reads team-a and nothing else.
    let made_s3 = common::client(
        &t.endpoint(),
        made["id"].as_str().unwrap(),
        made["secret"].as_str().unwrap(),
    );
    made_s3
        .list_objects_v2()
        .bucket("team-a")
        .send()
        .await
        .expect("granted");
    assert!(
        made_s3
            .list_objects_v2()
            .bucket("other")
            .send()
            .await
            .is_err()
    );

    // Quotas where allowed.
    let quota = |bucket: &str| {
        call(
            reqwest::Method::PUT,
            &format!("/api/admin/buckets/{bucket}/quota"),
            Some(json!({"maxObjects": 10})),
        )
    };
    assert_eq!(quota("team-a").await.unwrap().status(), 200);
    let (status, code) = code_of(quota("other").await.unwrap()).await;
    assert_eq!((status, code.as_str()), (403, "AccessDenied"));
    assert!(meta.bucket_quota("other").await.unwrap().is_none());

    // Deletes, except what its Deny protects (and the root key, always).
    let delete = |id: &str| {
        call(
            reqwest::Method::DELETE,
            &format!("/api/admin/keys/{id}"),
            None,
        )
    };
    assert_eq!(delete(&victim.id).await.unwrap().status(), 200);
    let (status, code) = code_of(delete(&protected.id).await.unwrap()).await;
    assert_eq!((status, code.as_str()), (403, "AccessDenied"));
    let root_id = t.server.root_key().id.clone();
    let (status, _) = code_of(delete(&root_id).await.unwrap()).await;
    assert_eq!(status, 400);
    assert!(meta.get_access_key(&victim.id).await.unwrap().is_none());
    assert!(meta.get_access_key(&protected.id).await.unwrap().is_some());

    // The key it made administers nothing.
    let plain = logged_in_as(
        &http,
        &url,
        made["id"].as_str().unwrap(),
        made["secret"].as_str().unwrap(),
    )
    .await;
    let keys = http
        .get(format!("{url}/api/admin/keys"))
        .header("cookie", &plain.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(keys).await, (403, "AccessDenied".to_owned()));
    t.stop().await;
}
