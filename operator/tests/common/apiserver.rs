//! A small in-process Kubernetes API server for the operator's tests.
//!
//! It speaks the real REST protocol over HTTP, so the operator's unmodified
//! `kube::Client` (typed Api, finalizer JSON patches, server-side-apply status
//! patches, list + watch for controllers) talks to it as to a cluster. It keeps the
//! API-server semantics the operator relies on: uid/resourceVersion/generation,
//! optimistic concurrency on replace, status subresources (spec writes ignore
//! status and vice versa), finalizers and deletionTimestamp, owner-reference
//! garbage collection, label selectors, watch streams, and validation of Coffer
//! resources against the CRD schemas, including their CEL rules.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::schema;

/// `(group/version, plural)`, namespace, name.
type Key = (String, String, String, String);

#[derive(Clone)]
struct WatchEvent {
    rv: u64,
    gv: String,
    plural: String,
    namespace: String,
    kind: &'static str,
    object: Value,
}

struct State {
    objects: BTreeMap<Key, Value>,
    rv: u64,
    uid: u64,
    history: Vec<WatchEvent>,
}

#[derive(Clone)]
pub struct ApiServer {
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<WatchEvent>,
    /// openAPIV3Schema per `(group/version, plural)`, from the CRDs.
    schemas: Arc<BTreeMap<(String, String), Value>>,
    pub addr: SocketAddr,
}

fn status(code: StatusCode, reason: &str, message: impl Into<String>) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message.into(), "reason": reason, "code": code.as_u16(),
    });
    (code, axum::Json(body)).into_response()
}

fn ok(object: Value) -> Response {
    (StatusCode::OK, axum::Json(object)).into_response()
}

/// Parsed request path.
struct Target {
    gv: String,
    plural: String,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (gv, rest) = match parts.as_slice() {
        ["api", "v1", rest @ ..] => ("v1".to_owned(), rest),
        ["apis", group, version, rest @ ..] => (format!("{group}/{version}"), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_owned()), rest),
        _ => (None, rest),
    };
    let (plural, name, subresource) = match rest {
        [plural] => (plural, None, None),
        [plural, name] => (plural, Some(*name), None),
        [plural, name, sub] => (plural, Some(*name), Some(*sub)),
        _ => return None,
    };
    Some(Target {
        gv,
        plural: (*plural).to_owned(),
        namespace,
        name: name.map(str::to_owned),
        subresource: subresource.map(str::to_owned),
    })
}

fn query(uri: &Uri) -> BTreeMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let decode = |s: &str| {
                urlencoding::decode(s)
                    .map(|c| c.into_owned())
                    .unwrap_or_else(|_| s.to_owned())
            };
            (decode(k), decode(v))
        })
        .collect()
}

fn labels_match(object: &Value, selector: Option<&String>) -> bool {
    let Some(selector) = selector.filter(|s| !s.is_empty()) else {
        return true;
    };
    let labels = &object["metadata"]["labels"];
    selector.split(',').all(|term| match term.split_once('=') {
        Some((k, v)) => labels[k.trim_end_matches('=')].as_str() == Some(v),
        None => !labels[term].is_null(),
    })
}

/// Resources whose `status` is a subresource: spec writes keep it, status writes
/// change only it, and a spec change bumps `metadata.generation`.
fn has_status_subresource(gv: &str) -> bool {
    gv.starts_with("coffer.dev/")
}

fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = json!({});
            }
            for (k, v) in fields {
                if v.is_null() {
                    if let Some(obj) = target.as_object_mut() {
                        obj.remove(k);
                    }
                } else {
                    merge_patch(&mut target[k.as_str()], v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

impl ApiServer {
    /// Starts the server on a free local port; `crds` are the CRD objects whose
    /// schemas validate Coffer resources.
    pub async fn start(crds: &[Value]) -> ApiServer {
        let mut schemas = BTreeMap::new();
        for crd in crds {
            let group = crd["spec"]["group"].as_str().unwrap_or_default();
            let plural = crd["spec"]["names"]["plural"].as_str().unwrap_or_default();
            for version in crd["spec"]["versions"].as_array().into_iter().flatten() {
                let v = version["name"].as_str().unwrap_or_default();
                schemas.insert(
                    (format!("{group}/{v}"), plural.to_owned()),
                    version["schema"]["openAPIV3Schema"].clone(),
                );
            }
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind api server");
        let addr = listener.local_addr().expect("local addr");
        let (events, _) = broadcast::channel(4096);
        let server = ApiServer {
            state: Arc::new(Mutex::new(State {
                objects: BTreeMap::new(),
                rv: 1,
                uid: 0,
                history: Vec::new(),
            })),
            events,
            schemas: Arc::new(schemas),
            addr,
        };
        let handler = server.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let handler = handler.clone();
                async move { handler.handle(method, uri, headers, body) }
            },
        );
        tokio::spawn(async move {
            axum::serve(listener, app).await.ok();
        });
        server
    }

    /// A client for this server, default namespace `default`.
    pub fn client(&self) -> kube::Client {
        let url: Uri = format!("http://{}", self.addr).parse().expect("valid url");
        let config = kube::Config::new(url);
        kube::Client::try_from(config).expect("kube client")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn handle(&self, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
        let Some(target) = parse_path(uri.path()) else {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("no route {}", uri.path()),
            );
        };
        let params = query(&uri);
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json")
            .to_owned();
        let body: Value = if body.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(&body).or_else(|_| serde_yaml::from_slice(&body)) {
                Ok(v) => v,
                Err(e) => {
                    return status(StatusCode::BAD_REQUEST, "BadRequest", format!("body: {e}"));
                }
            }
        };
        match (method, &target.name) {
            (Method::GET, None) if params.get("watch").is_some_and(|w| w == "true" || w == "1") => {
                self.watch(&target, &params)
            }
            (Method::GET, None) => self.list(&target, &params),
            (Method::GET, Some(name)) => match self.lock().objects.get(&self.key(&target, name)) {
                Some(object) => ok(object.clone()),
                None => status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    format!("{} {name} not found", target.plural),
                ),
            },
            (Method::POST, None) => self.create(&target, body),
            (Method::PUT, Some(name)) => self.replace(&target, name, body),
            (Method::PATCH, Some(name)) => self.patch(&target, name, &content_type, body),
            (Method::DELETE, Some(name)) => self.delete(&target, name),
            (method, _) => status(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                format!("{method}"),
            ),
        }
    }

    fn key(&self, target: &Target, name: &str) -> Key {
        (
            target.gv.clone(),
            target.plural.clone(),
            target.namespace.clone().unwrap_or_default(),
            name.to_owned(),
        )
    }

    fn validate(
        &self,
        target: &Target,
        object: &Value,
        old: Option<&Value>,
    ) -> Result<(), Box<Response>> {
        let Some(schema) = self
            .schemas
            .get(&(target.gv.clone(), target.plural.clone()))
        else {
            return Ok(());
        };
        let strip = |value: &Value| {
            let mut checked = value.clone();
            if let Some(obj) = checked.as_object_mut() {
                for field in ["apiVersion", "kind", "metadata"] {
                    obj.remove(field);
                }
            }
            checked
        };
        let checked = strip(object);
        let invalid = |errors: Vec<String>| {
            Box::new(status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                errors.join("; "),
            ))
        };
        schema::validate(schema, &checked).map_err(invalid)?;
        // The CRDs' x-kubernetes-validations (CEL), with oldSelf on updates.
        let old = old.map(strip);
        kube_cel::validate(schema, &checked, old.as_ref())
            .map_err(|errors| invalid(errors.iter().map(|e| e.to_string()).collect()))?;
        Ok(())
    }

    fn list(&self, target: &Target, params: &BTreeMap<String, String>) -> Response {
        let state = self.lock();
        let items: Vec<Value> = state
            .objects
            .iter()
            .filter(|((gv, plural, ns, _), _)| {
                *gv == target.gv
                    && *plural == target.plural
                    && target.namespace.as_ref().is_none_or(|t| t == ns)
            })
            .map(|(_, v)| v.clone())
            .filter(|v| labels_match(v, params.get("labelSelector")))
            .collect();
        ok(json!({
            "apiVersion": target.gv, "kind": "List",
            "metadata": {"resourceVersion": state.rv.to_string()},
            "items": items,
        }))
    }

    fn watch(&self, target: &Target, params: &BTreeMap<String, String>) -> Response {
        let since: u64 = params
            .get("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let selector = params.get("labelSelector").cloned();
        let (gv, plural, namespace) = (
            target.gv.clone(),
            target.plural.clone(),
            target.namespace.clone(),
        );
        let matches = move |e: &WatchEvent| {
            e.gv == gv
                && e.plural == plural
                && namespace.as_ref().is_none_or(|n| *n == e.namespace)
                && labels_match(&e.object, selector.as_ref())
        };
        // Subscribe before reading the backlog so nothing falls in between.
        let receiver = self.events.subscribe();
        let backlog: Vec<WatchEvent> = self
            .lock()
            .history
            .iter()
            .filter(|e| e.rv > since && matches(e))
            .cloned()
            .collect();
        let last = backlog.last().map_or(since, |e| e.rv);
        let line = |e: &WatchEvent| {
            let mut text = json!({"type": e.kind, "object": e.object}).to_string();
            text.push('\n');
            Ok::<_, std::io::Error>(Bytes::from(text))
        };
        let backlog_stream = futures::stream::iter(backlog.iter().map(line).collect::<Vec<_>>());
        let live = futures::stream::unfold((receiver, last), move |(mut rx, last)| {
            let matches = matches.clone();
            async move {
                loop {
                    match rx.recv().await {
                        Ok(e) if e.rv > last && matches(&e) => {
                            let rv = e.rv;
                            return Some((line(&e), (rx, rv)));
                        }
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        });
        let stream = futures::StreamExt::chain(backlog_stream, live);
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(Body::from_stream(stream))
            .unwrap_or_else(|_| {
                status(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    "response",
                )
            })
    }

    /// Stores `object` under `key`, bumping the resourceVersion and notifying watchers.
    fn store(&self, state: &mut State, key: Key, mut object: Value, kind: &'static str) -> Value {
        state.rv += 1;
        object["metadata"]["resourceVersion"] = json!(state.rv.to_string());
        let event = WatchEvent {
            rv: state.rv,
            gv: key.0.clone(),
            plural: key.1.clone(),
            namespace: key.2.clone(),
            kind,
            object: object.clone(),
        };
        if kind == "DELETED" {
            state.objects.remove(&key);
        } else {
            state.objects.insert(key, object.clone());
        }
        state.history.push(event.clone());
        self.events.send(event).ok();
        object
    }

    fn create(&self, target: &Target, mut object: Value) -> Response {
        let Some(name) = object["metadata"]["name"].as_str().map(str::to_owned) else {
            return status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                "metadata.name is required",
            );
        };
        if let Err(response) = self.validate(target, &object, None) {
            return *response;
        }
        let key = self.key(target, &name);
        let mut state = self.lock();
        if state.objects.contains_key(&key) {
            return status(
                StatusCode::CONFLICT,
                "AlreadyExists",
                format!("{} {name} already exists", target.plural),
            );
        }
        state.uid += 1;
        let uid = format!("00000000-0000-0000-0000-{:012}", state.uid);
        let meta = &mut object["metadata"];
        meta["uid"] = json!(uid);
        meta["creationTimestamp"] = json!(now());
        meta["generation"] = json!(1);
        if let Some(ns) = &target.namespace {
            meta["namespace"] = json!(ns);
        }
        if has_status_subresource(&target.gv)
            && let Some(obj) = object.as_object_mut()
        {
            obj.remove("status");
        }
        let stored = self.store(&mut state, key, object, "ADDED");
        (StatusCode::CREATED, axum::Json(stored)).into_response()
    }

    fn replace(&self, target: &Target, name: &str, object: Value) -> Response {
        let key = self.key(target, name);
        let state = self.lock();
        let Some(current) = state.objects.get(&key).cloned() else {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("{} {name} not found", target.plural),
            );
        };
        if let Some(rv) = object["metadata"]["resourceVersion"].as_str()
            && Some(rv) != current["metadata"]["resourceVersion"].as_str()
        {
            return status(
                StatusCode::CONFLICT,
                "Conflict",
                "the object has been modified",
            );
        }
        drop(state);
        self.update(target, key, current, object)
    }

    fn patch(&self, target: &Target, name: &str, content_type: &str, patch: Value) -> Response {
        let key = self.key(target, name);
        let Some(current) = self.lock().objects.get(&key).cloned() else {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("{} {name} not found", target.plural),
            );
        };
        let mut next = current.clone();
        if content_type.starts_with("application/json-patch+json") {
            // As in the API server, `test` of a missing path against null succeeds.
            let patch = match patch {
                Value::Array(ops) => Value::Array(
                    ops.into_iter()
                        .filter(|op| {
                            let path = op["path"].as_str().unwrap_or_default();
                            !(op["op"] == "test"
                                && op["value"].is_null()
                                && next.pointer(path).is_none())
                        })
                        .collect(),
                ),
                other => other,
            };
            let ops: json_patch::Patch = match serde_json::from_value(patch) {
                Ok(ops) => ops,
                Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", e.to_string()),
            };
            if let Err(e) = json_patch::patch(&mut next, &ops) {
                return status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", e.to_string());
            }
        } else if content_type.starts_with("application/apply-patch")
            && target.subresource.as_deref() == Some("status")
        {
            // Server-side apply by the status' only manager: what it applies is the
            // whole status, and fields it no longer sends are removed.
            next["status"] = patch["status"].clone();
        } else {
            // Merge and strategic merge patches (and apply on the main resource,
            // which the operator never does): a JSON merge.
            merge_patch(&mut next, &patch);
        }
        self.update(target, key, current, next)
    }

    /// Applies a spec or status write with subresource semantics, then finishes a
    /// deletion whose finalizers are all gone.
    fn update(&self, target: &Target, key: Key, current: Value, mut next: Value) -> Response {
        let status_write = target.subresource.as_deref() == Some("status");
        if status_write {
            let mut updated = current.clone();
            updated["status"] = next["status"].clone();
            next = updated;
        } else if has_status_subresource(&target.gv) {
            next["status"] = current["status"].clone();
            if next["spec"] != current["spec"] {
                let generation = current["metadata"]["generation"].as_i64().unwrap_or(1);
                next["metadata"]["generation"] = json!(generation + 1);
            }
        }
        if next.get("status").is_some_and(Value::is_null)
            && let Some(obj) = next.as_object_mut()
        {
            obj.remove("status");
        }
        for field in ["uid", "creationTimestamp", "namespace", "name"] {
            next["metadata"][field] = current["metadata"][field].clone();
        }
        if !current["metadata"]["deletionTimestamp"].is_null() {
            next["metadata"]["deletionTimestamp"] =
                current["metadata"]["deletionTimestamp"].clone();
        }
        if let Err(response) = self.validate(target, &next, Some(&current)) {
            return *response;
        }
        let mut state = self.lock();
        if next == current {
            return ok(current);
        }
        let deleting = !next["metadata"]["deletionTimestamp"].is_null();
        let finalizers_left = next["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if deleting && !finalizers_left {
            let uid = next["metadata"]["uid"].clone();
            let stored = self.store(&mut state, key, next, "DELETED");
            self.collect_garbage(&mut state, &uid);
            return ok(stored);
        }
        ok(self.store(&mut state, key, next, "MODIFIED"))
    }

    fn delete(&self, target: &Target, name: &str) -> Response {
        let key = self.key(target, name);
        let mut state = self.lock();
        let Some(mut object) = state.objects.get(&key).cloned() else {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("{} {name} not found", target.plural),
            );
        };
        let has_finalizers = object["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if has_finalizers {
            if object["metadata"]["deletionTimestamp"].is_null() {
                object["metadata"]["deletionTimestamp"] = json!(now());
                object = self.store(&mut state, key, object, "MODIFIED");
            }
            return ok(object);
        }
        let uid = object["metadata"]["uid"].clone();
        let stored = self.store(&mut state, key, object, "DELETED");
        self.collect_garbage(&mut state, &uid);
        ok(stored)
    }

    /// Deletes the dependents of a deleted owner, as the garbage collector does.
    fn collect_garbage(&self, state: &mut State, owner_uid: &Value) {
        let dependents: Vec<Key> = state
            .objects
            .iter()
            .filter(|(_, v)| {
                v["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| refs.iter().any(|r| r["uid"] == *owner_uid))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in dependents {
            if let Some(object) = state.objects.get(&key).cloned() {
                let uid = object["metadata"]["uid"].clone();
                self.store(state, key, object, "DELETED");
                self.collect_garbage(state, &uid);
            }
        }
    }

    /// Every stored object of a kind (`gv`, `plural`) in a namespace.
    pub fn objects(&self, gv: &str, plural: &str, namespace: &str) -> Vec<Value> {
        self.lock()
            .objects
            .iter()
            .filter(|((g, p, ns, _), _)| g == gv && p == plural && ns == namespace)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
