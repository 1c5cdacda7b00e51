//! Requests that pass SigV4 (signed by the root key here), so that what is
//! behind authentication is reached: XML bodies (CompleteMultipartUpload,
//! Delete, Tagging, Lifecycle, CORS, Object Lock, ACLs, versioning), bucket
//! policy JSON, `Range` and conditional headers, copy sources, checksums,
//! `aws-chunked` bodies and their trailers (the request's own
//! `x-amz-content-sha256` is signed as declared).
#![no_main]

use coffer_fuzz::{Payload, TextRequest, harness};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let harness = harness();
    if let Some(request) = TextRequest::parse(data).and_then(|t| t.signed(Payload::AsDeclared)) {
        harness.send(request);
    }
});
