//! A real browser against a real server: headless Chromium loads a page from
//! another origin whose JavaScript uploads with `fetch` to a presigned PUT URL
//! (CORS preflight, exposed ETag) and then submits an HTML form to PostObject
//! with a policy signed here; the upload redirects back to the page's origin.
//! Both objects are then read back with aws-sdk-s3. Needs `chromium` (Debian's
//! package) or `COFFER_CHROMIUM`: without it the test fails, it never skips.

#[path = "s3_api/common.rs"]
mod common;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::types::{CorsConfiguration, CorsRule};
use axum::extract::{RawQuery, State};
use axum::response::Html;
use axum::routing::get;
use serde_json::json;

use common::{Backend, TestServer};

const BUCKET: &str = "browser";

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

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// What the page reports back to its own origin.
#[derive(Default)]
struct Reports {
    put: Option<String>,
    redirect: Option<Vec<(String, String)>>,
}

#[derive(Clone)]
struct Page {
    html: Arc<Mutex<String>>,
    reports: Arc<Mutex<Reports>>,
}

async fn serve_page(State(page): State<Page>) -> Html<String> {
    Html(page.html.lock().unwrap().clone())
}

fn query_pairs(query: Option<String>) -> Vec<(String, String)> {
    let url = reqwest::Url::parse(&format!("http://page/?{}", query.unwrap_or_default()))
        .expect("query parses");
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

async fn report_put(State(page): State<Page>, RawQuery(query): RawQuery) -> &'static str {
    page.reports.lock().unwrap().put = Some(
        query_pairs(query)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&"),
    );
    "ok"
}

async fn upload_done(State(page): State<Page>, RawQuery(query): RawQuery) -> Html<String> {
    let query = query_pairs(query);
    let shown = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";");
    page.reports.lock().unwrap().redirect = Some(query);
    Html(format!(
        "<html><body><p id=\"done\">{shown}</p></body></html>"
    ))
}

/// The page: a fetch() PUT to a presigned URL, then a real form submission.
fn page_html(presigned_put: &str, endpoint: &str, fields: &[(String, String)]) -> String {
    let inputs: String = fields
        .iter()
        .map(|(name, value)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">\n",
                html_escape(name),
                html_escape(value)
            )
        })
        .collect();
    format!(
        r#"<!doctype html>
<html><head><title>upload</title></head><body>
<form id="form" method="post" action="{endpoint}/{BUCKET}" enctype="multipart/form-data" target="sink">
{inputs}<input id="file" type="file" name="file">
</form>
<iframe name="sink" id="sink"></iframe>
<pre id="log">started</pre>
<script>
(async () => {{
  const log = (line) => document.getElementById('log').textContent += '\n' + line;
  try {{
    const put = await fetch({put_url}, {{ method: 'PUT', body: new Blob(['hello from fetch']) }});
    const etag = put.headers.get('ETag') || '';
    log('put ' + put.status + ' ' + etag);
    await fetch('/report?status=' + put.status + '&etag=' + encodeURIComponent(etag));
    const file = new File(['hello from a form'], 'note.txt', {{ type: 'text/plain' }});
    const files = new DataTransfer();
    files.items.add(file);
    document.getElementById('file').files = files.files;
    // The upload answers 303 to this origin's /done, loaded in the iframe (a
    // top-level navigation would end the page --dump-dom reads).
    const sink = document.getElementById('sink');
    sink.addEventListener('load', () => log('done ' + sink.contentWindow.location.search));
    document.getElementById('form').submit();
  }} catch (e) {{
    log('error ' + e);
    await fetch('/report?error=' + encodeURIComponent(String(e)));
  }}
}})();
</script>
</body></html>"#,
        put_url = serde_json::to_string(presigned_put).unwrap(),
    )
}

/// Chromium's profile directory, removed however the test ends.
struct Profile(std::path::PathBuf);

impl Drop for Profile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn run_chromium(url: &str) -> String {
    let profile = Profile(coffer_testkit::temp_dir("chromium"));
    let mut command = tokio::process::Command::new(chromium());
    command
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
            "--virtual-time-budget=30000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.0.display()))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command.spawn().expect("chromium starts");
    // A hung browser fails the test instead of hanging it.
    let output = tokio::time::timeout(Duration::from_secs(180), child.wait_with_output())
        .await
        .expect("chromium finished within 3 minutes")
        .expect("chromium ran");
    let dom = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "chromium failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    dom
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_uploads_with_presigned_put_and_post_form() {
    let t = TestServer::start(Backend::Sqlite).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();

    // The page lives on its own origin (another port).
    let page = Page {
        html: Arc::new(Mutex::new(String::new())),
        reports: Arc::new(Mutex::new(Reports::default())),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/", get(serve_page))
        .route("/report", get(report_put))
        .route("/done", get(upload_done))
        .with_state(page.clone());
    let page_server = tokio::spawn(async move { axum::serve(listener, app).await });

    s3.put_bucket_cors()
        .bucket(BUCKET)
        .cors_configuration(
            CorsConfiguration::builder()
                .cors_rules(
                    CorsRule::builder()
                        .allowed_origins(&origin)
                        .allowed_methods("PUT")
                        .allowed_methods("POST")
                        .allowed_methods("GET")
                        .allowed_headers("*")
                        .expose_headers("ETag")
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    let presigned = s3
        .put_object()
        .bucket(BUCKET)
        .key("fetched.txt")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(600)).unwrap())
        .await
        .unwrap();
    let root = t.server.root_key();
    let redirect = format!("{origin}/done");
    let mut fields = vec![
        ("key".to_owned(), "forms/${filename}".to_owned()),
        ("Content-Type".to_owned(), "text/plain".to_owned()),
        ("success_action_redirect".to_owned(), redirect.clone()),
    ];
    fields.extend(common::signed_policy(
        vec![
            json!({"bucket": BUCKET}),
            json!(["starts-with", "$key", "forms/"]),
            json!(["starts-with", "$Content-Type", "text/"]),
            json!({"success_action_redirect": redirect}),
            json!(["content-length-range", 1, 4096]),
        ],
        time::Duration::minutes(10),
        &root.id,
        &root.secret,
    ));
    *page.html.lock().unwrap() = page_html(presigned.uri(), &t.endpoint(), &fields);

    let dom = run_chromium(&format!("{origin}/")).await;

    let (put, redirect) = {
        let reports = page.reports.lock().unwrap();
        (reports.put.clone(), reports.redirect.clone())
    };
    let put = put.unwrap_or_default();
    assert!(
        put.starts_with("status=200&etag=\""),
        "fetch PUT from the page (CORS preflight + exposed ETag): {put:?}\nDOM: {dom}"
    );
    let redirect =
        redirect.unwrap_or_else(|| panic!("the form upload never redirected back; DOM: {dom}"));
    let param = |name: &str| {
        redirect
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(param("bucket"), BUCKET);
    assert_eq!(param("key"), "forms/note.txt");
    assert!(
        dom.contains("done ?bucket=browser&amp;key=forms%2Fnote.txt"),
        "{dom}"
    );

    let fetched = s3
        .get_object()
        .bucket(BUCKET)
        .key("fetched.txt")
        .send()
        .await
        .unwrap();
    let fetched_etag = fetched.e_tag().unwrap().to_owned();
    let bytes = fetched.body.collect().await.unwrap().into_bytes();
    assert_eq!(&bytes[..], b"hello from fetch");
    assert!(put.contains(fetched_etag.trim_matches('"')), "{put}");
    let posted = s3
        .get_object()
        .bucket(BUCKET)
        .key("forms/note.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(posted.content_type(), Some("text/plain"));
    assert_eq!(
        posted.e_tag().unwrap().trim_matches('"'),
        param("etag").trim_matches('"')
    );
    let bytes = posted.body.collect().await.unwrap().into_bytes();
    assert_eq!(&bytes[..], b"hello from a form");

    page_server.abort();
    t.stop().await;
}
