//! PostObject, the browser form upload. s3s parses the form, checks the signed
//! POST policy (expiry, `eq`/`starts-with`, `content-length-range`, every field
//! covered) and answers `success_action_status`/`success_action_redirect`; this
//! file adds what s3s leaves out: `${filename}` in the `key` field, the XML
//! `tagging` field, and AWS's `AccessDenied` for policy violations. The form
//! head is read from the body as it streams by (`watch_form`), before s3s sees it.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use bytes::Bytes;
use futures::StreamExt;
use s3s::dto::*;
use s3s::post_policy::PostPolicyCondition;
use s3s::{S3Result, s3_error};

/// The form head never needs more than this (AWS caps a POST form's fields at
/// 20 KB); a form whose `file` part starts later is passed on untouched.
const MAX_FORM_HEAD: usize = 64 * 1024;

/// Fields of a browser form that s3s does not hand to the handler (AWS's
/// `acl` and XML `tagging`), captured from the body on its way in.
#[derive(Clone, Default)]
pub(crate) struct BrowserForm {
    fields: Arc<Mutex<FormFields>>,
}

#[derive(Clone, Default)]
struct FormFields {
    acl: Option<String>,
    tagging: Option<String>,
    /// The base64 POST policy, to check `acl` and `tagging` against as applied.
    policy: Option<String>,
    /// A field named twice (case-insensitively): the form is refused, since the
    /// copy the policy checks need not be the copy applied.
    repeated: Option<String>,
    /// Signed with SigV2 (a `signature` field rather than `x-amz-signature`).
    sigv2: bool,
    /// Names an access key (`AWSAccessKeyId` or `x-amz-credential`).
    credential: bool,
    /// Names it the SigV2 way (`AWSAccessKeyId`).
    v2_credential: bool,
    /// Carries a signature (`signature` or `x-amz-signature`).
    signed: bool,
}

impl BrowserForm {
    fn record(&self, fields: FormFields) {
        *self.fields.lock().unwrap_or_else(|e| e.into_inner()) = fields;
    }

    fn fields(&self) -> FormFields {
        self.fields
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The boundary of a `multipart/form-data` request.
pub(crate) fn form_boundary(content_type: &str) -> Option<String> {
    let (mime, params) = content_type.split_once(';')?;
    if !mime.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (name, value) = p.trim().split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"').to_owned())
    })
}

/// One part of the form head: its name, file name, and where its value lies.
struct Part {
    name: String,
    file_name: Option<String>,
    value: std::ops::Range<usize>,
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// `form-data; name="key"; filename="a.txt"` → ("key", Some("a.txt")). Read
/// exactly as s3s reads it (one `Content-Disposition` header, this one form),
/// so the fields seen here are the fields s3s checks against the policy; a part
/// s3s would refuse is refused here too.
fn disposition(headers: &str) -> Option<(String, Option<String>)> {
    let mut values = headers.split("\r\n").filter_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-disposition")
            .then_some(value.trim())
    });
    let (Some(value), None) = (values.next(), values.next()) else {
        return None;
    };
    let quoted = |text: &str, param: &str| -> Option<(String, usize)> {
        let rest = text.strip_prefix(param)?.strip_prefix("=\"")?;
        let end = rest.find('"').filter(|&end| end > 0)?;
        Some((rest[..end].to_owned(), param.len() + 2 + end + 1))
    };
    let rest = value.strip_prefix("form-data; ")?;
    let (name, used) = quoted(rest, "name")?;
    let rest = &rest[used..];
    if rest.is_empty() {
        return Some((name, None));
    }
    let (file_name, used) = quoted(rest.strip_prefix("; ")?, "filename")?;
    (used + 2 == rest.len()).then_some((name, Some(file_name)))
}

/// The parts before `file`, and `file` itself (its value range empty), once
/// the head holds them all; `None` while more bytes are needed.
fn parse_head(head: &[u8], boundary: &str) -> Option<Vec<Part>> {
    let delimiter = format!("--{boundary}");
    let mut pos = find(head, delimiter.as_bytes(), 0)? + delimiter.len();
    let mut parts = Vec::new();
    loop {
        if head.get(pos..pos + 2)? != b"\r\n" {
            return None;
        }
        let headers_start = pos + 2;
        let headers_end = find(head, b"\r\n\r\n", headers_start)?;
        let headers = String::from_utf8_lossy(&head[headers_start..headers_end]);
        let (name, file_name) = disposition(&headers)?;
        let value_start = headers_end + 4;
        if name.eq_ignore_ascii_case("file") {
            parts.push(Part {
                name,
                file_name,
                value: value_start..value_start,
            });
            return Some(parts);
        }
        let next = find(head, format!("\r\n{delimiter}").as_bytes(), value_start)?;
        parts.push(Part {
            name,
            file_name,
            value: value_start..next,
        });
        pos = next + 2 + delimiter.len();
    }
}

/// A browser sends the bare name; some send a path (`C:\Users\me\a.txt`).
fn base_name(file_name: &str) -> &str {
    file_name.rsplit(['/', '\\']).next().unwrap_or(file_name)
}

/// Rewrites the form head: `${filename}` in the `key` field becomes the name of
/// the uploaded file, so the policy check, the stored key and the response all
/// see the real key. Records the `tagging` field.
fn rewrite_head(head: &[u8], boundary: &str, form: &BrowserForm) -> Option<Vec<u8>> {
    let parts = parse_head(head, boundary)?;
    let file_name = parts
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case("file"))
        .and_then(|p| p.file_name.as_deref())
        .map(base_name)
        .unwrap_or_default();
    let value_of = |name: &str| {
        parts
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .map(|p| String::from_utf8_lossy(&head[p.value.clone()]).into_owned())
    };
    let repeated = parts.iter().enumerate().find_map(|(i, p)| {
        parts[..i]
            .iter()
            .any(|q| q.name.eq_ignore_ascii_case(&p.name))
            .then(|| p.name.to_ascii_lowercase())
    });
    form.record(FormFields {
        acl: value_of("acl"),
        tagging: value_of("tagging"),
        policy: value_of("policy"),
        repeated,
        sigv2: value_of("signature").is_some(),
        credential: value_of("awsaccesskeyid").is_some() || value_of("x-amz-credential").is_some(),
        v2_credential: value_of("awsaccesskeyid").is_some(),
        signed: value_of("signature").is_some() || value_of("x-amz-signature").is_some(),
    });
    let mut out = head.to_vec();
    if let Some(key) = parts.iter().find(|p| p.name.eq_ignore_ascii_case("key")) {
        let value = String::from_utf8_lossy(&head[key.value.clone()]);
        if value.contains("${filename}") {
            let replaced = value.replace("${filename}", file_name);
            out.splice(key.value.clone(), replaced.into_bytes());
        }
    }
    Some(out)
}

/// Passes a form body through, rewriting its head (see [`rewrite_head`]) once
/// it has arrived; the file's bytes stream on untouched.
pub(crate) fn watch_form(body: Body, boundary: String, form: BrowserForm) -> Body {
    struct State {
        inner: axum::body::BodyDataStream,
        head: Vec<u8>,
        done: bool,
    }
    let state = State {
        inner: body.into_data_stream(),
        head: Vec::new(),
        done: false,
    };
    let stream = futures::stream::unfold(state, move |mut state| {
        let boundary = boundary.clone();
        let form = form.clone();
        async move {
            loop {
                match state.inner.next().await {
                    Some(Ok(chunk)) if state.done => return Some((Ok(chunk), state)),
                    Some(Ok(chunk)) => {
                        state.head.extend_from_slice(&chunk);
                        if let Some(rewritten) = rewrite_head(&state.head, &boundary, &form) {
                            state.done = true;
                            state.head.clear();
                            return Some((Ok(Bytes::from(rewritten)), state));
                        }
                        if state.head.len() > MAX_FORM_HEAD {
                            state.done = true;
                            let head = Bytes::from(std::mem::take(&mut state.head));
                            return Some((Ok(head), state));
                        }
                    }
                    Some(Err(e)) => {
                        state.done = true;
                        return Some((Err(e), state));
                    }
                    None if state.head.is_empty() => return None,
                    None => {
                        let head = Bytes::from(std::mem::take(&mut state.head));
                        return Some((Ok(head), state));
                    }
                }
            }
        }
    });
    Body::from_stream(stream)
}

/// A signed form that lacks a field its signature needs: AWS answers `400
/// InvalidArgument` naming the field (s3s would take a form without a
/// signature as anonymous and answer `403`). Returns the message.
pub(crate) fn missing_signature_field(form: &BrowserForm) -> Option<String> {
    let fields = form.fields();
    let missing = match (fields.policy.is_some(), fields.credential, fields.signed) {
        (true, true, false) if fields.v2_credential => "Signature",
        (true, _, false) => "X-Amz-Signature",
        (false, true, _) | (false, _, true) => "Policy",
        _ => return None,
    };
    Some(format!(
        "Bucket POST must contain a field named '{missing}'. If it is specified, please check the order of the fields."
    ))
}

/// s3s reports a violated POST policy condition as `400 InvalidPolicyDocument`;
/// AWS answers `403 AccessDenied` "Invalid according to Policy: ...", which is
/// what browser upload code checks for. Returns the replacement code, status
/// and message for an error of a POST form, if it needs one.
pub(crate) fn policy_error(code: &str, message: &str) -> Option<(http::StatusCode, String)> {
    let violated = code == "InvalidPolicyDocument"
        && (message.starts_with("Policy condition") || message.starts_with("Bucket in form field"));
    let expired = code == "AccessDenied" && message == "Request has expired";
    if expired {
        return Some((
            http::StatusCode::FORBIDDEN,
            "Invalid according to Policy: Policy expired.".to_owned(),
        ));
    }
    violated.then(|| {
        (
            http::StatusCode::FORBIDDEN,
            format!("Invalid according to Policy: {message}"),
        )
    })
}

/// The `acl` and `tagging` fields applied here must be the values the POST
/// policy allowed: s3s checked the form it parsed, and this check makes sure
/// the two readings of the form agree.
fn check_policy_covers(form: &FormFields) -> S3Result<()> {
    let Some(encoded) = &form.policy else {
        return Ok(());
    };
    let policy = s3s::post_policy::PostPolicy::from_base64(encoded)
        .map_err(|_| s3_error!(InvalidPolicyDocument, "failed to parse POST policy"))?;
    let fields = [
        ("acl", form.acl.as_deref()),
        ("tagging", form.tagging.as_deref()),
    ];
    for (field, value) in fields {
        let Some(value) = value else { continue };
        let mut covered = false;
        for condition in &policy.conditions {
            let holds = match condition {
                PostPolicyCondition::Eq { field: f, value: v } if f == field => value == v,
                PostPolicyCondition::StartsWith { field: f, prefix } if f == field => {
                    value.starts_with(prefix.as_str())
                }
                _ => continue,
            };
            covered = true;
            if !holds {
                return Err(policy_violation(&format!(
                    "Policy Condition failed for field '{field}'"
                )));
            }
        }
        if !covered {
            return Err(policy_violation(&format!("Extra input fields: {field}")));
        }
    }
    Ok(())
}

fn policy_violation(detail: &str) -> s3s::S3Error {
    s3_error!(AccessDenied, "Invalid according to Policy: {detail}")
}

/// The XML `tagging` field as `x-amz-tagging` would carry it.
fn tagging_field(xml: &str) -> S3Result<String> {
    let mut d = s3s::xml::Deserializer::new(xml.as_bytes());
    let tagging: Tagging = s3s::xml::Deserialize::deserialize(&mut d).map_err(|_| {
        s3_error!(
            MalformedXML,
            "The tagging field is not a valid Tagging document"
        )
    })?;
    let pairs: Vec<String> = tagging
        .tag_set
        .iter()
        .map(|t| {
            format!(
                "{}={}",
                urlencoding::encode(t.key.as_deref().unwrap_or_default()),
                urlencoding::encode(t.value.as_deref().unwrap_or_default())
            )
        })
        .collect();
    Ok(pairs.join("&"))
}

/// Applies the form fields s3s does not map (`acl`, XML `tagging`) to the
/// PutObject that a PostObject becomes (s3s's default `post_object`).
pub(super) fn apply_form_fields(
    input: &mut PutObjectInput,
    extensions: &http::Extensions,
    allow_sigv2: bool,
) -> S3Result<()> {
    let Some(form) = extensions.get::<BrowserForm>().map(BrowserForm::fields) else {
        return Ok(());
    };
    if let Some(name) = &form.repeated {
        return Err(s3_error!(
            InvalidArgument,
            "The form field '{name}' appears more than once; each field may be given once."
        ));
    }
    if form.sigv2 && !allow_sigv2 {
        return Err(crate::auth::sigv2::refused());
    }
    check_policy_covers(&form)?;
    if let Some(xml) = form.tagging {
        if input.tagging.is_some() {
            return Err(s3_error!(
                InvalidArgument,
                "Give tags either in the tagging field or in x-amz-tagging, not both"
            ));
        }
        input.tagging = Some(tagging_field(&xml)?);
    }
    if let Some(acl) = form.acl {
        if input.acl.is_some() {
            return Err(s3_error!(
                InvalidArgument,
                "Give the ACL either in the acl field or in x-amz-acl, not both"
            ));
        }
        input.acl = Some(ObjectCannedACL::from(acl));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(fields: &[(&str, &str)], file_name: &str) -> Vec<u8> {
        let mut body = String::new();
        for (name, value) in fields {
            body.push_str(&format!(
                "--XyZ\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            ));
        }
        body.push_str(&format!(
            "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\nContent-Type: text/plain\r\n\r\nDATA\r\n--XyZ--\r\n"
        ));
        body.into_bytes()
    }

    #[test]
    fn filename_is_substituted_in_the_key_field_only() {
        let body = form(
            &[("key", "up/${filename}"), ("x-amz-meta-k", "${filename}")],
            "C:\\docs\\a b.txt",
        );
        let out = rewrite_head(&body, "XyZ", &BrowserForm::default()).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\r\n\r\nup/a b.txt\r\n--XyZ"), "{text}");
        assert!(text.contains("\r\n\r\n${filename}\r\n--XyZ"), "{text}");
        assert!(text.ends_with("DATA\r\n--XyZ--\r\n"));
    }

    #[test]
    fn head_is_incomplete_until_the_file_part_headers_arrive() {
        let body = form(&[("key", "k")], "f");
        let cut = find(&body, b"name=\"file\"", 0).unwrap();
        assert!(parse_head(&body[..cut], "XyZ").is_none());
        assert!(parse_head(&body, "XyZ").is_some());
    }

    #[test]
    fn boundary_comes_from_the_content_type() {
        assert_eq!(
            form_boundary("multipart/form-data; boundary=----abc").as_deref(),
            Some("----abc")
        );
        assert_eq!(
            form_boundary("Multipart/Form-Data; charset=utf-8; boundary=\"q\"").as_deref(),
            Some("q")
        );
        assert_eq!(form_boundary("application/xml"), None);
    }
}
