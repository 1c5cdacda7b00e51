//! IAM policy JSON: parsing (identity and bucket policies) and evaluation.
//!
//! Input: a request (`action`, `resource`, `principal` lines, then
//! `key=value` context lines), an empty line, and a policy document.
//! Beyond "no panic": a policy that parses survives its own serialization
//! (`to_json` parses back and decides every request the same way).
#![no_main]

use coffer_server::iam::{PolicyDocument, Request, RequestContext};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (head, json) = text.split_once("\n\n").unwrap_or(("", text));
    let mut lines = head.lines();
    let action = lines.next().unwrap_or("s3:GetObject");
    let resource = lines.next().unwrap_or("arn:aws:s3:::fuzz/object");
    let principal = lines.next().filter(|p| !p.is_empty());
    let mut context = RequestContext::default();
    for line in lines {
        if let Some((key, value)) = line.split_once('=') {
            context.insert(key, value);
        }
    }
    let request = Request {
        action,
        resource,
        principal,
        context: &context,
    };
    for (policy, bucket) in [
        (PolicyDocument::parse(json), false),
        (PolicyDocument::parse_bucket_policy(json), true),
    ] {
        let Ok(policy) = policy else { continue };
        let decision = policy.evaluate(&request, bucket);
        let again = PolicyDocument::parse(&policy.to_json())
            .unwrap_or_else(|e| panic!("a parsed policy does not parse back: {e}"));
        assert_eq!(
            again.evaluate(&request, bucket),
            decision,
            "serializing the policy changed its decision"
        );
    }
});
