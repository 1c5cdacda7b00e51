//! Any request, as a client may send it before authentication: the SigV4
//! `Authorization` header and presigned query parsing, SigV2, anonymous
//! access, POST object forms (multipart parsing, the policy document), CORS
//! preflights, virtual-host and path routing.
#![no_main]

use coffer_fuzz::{TextRequest, harness};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let harness = harness();
    if let Some(text) = TextRequest::parse(data) {
        harness.send(text.unsigned());
    }
});
