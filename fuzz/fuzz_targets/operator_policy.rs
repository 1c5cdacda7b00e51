//! The operator's translation of an AccessKey's grants and inline policy into
//! the key's IAM policy. Beyond "no panic", the promise the operator makes:
//! an inline policy only narrows — whatever the resulting policy allows, the
//! grants alone allow too.
//!
//! Input: grant lines (`bucket ACCESS [prefix]`, ACCESS one of ReadOnly,
//! ReadWrite, WriteOnly, Admin), an empty line, request lines (`action
//! resource`), an empty line, and the inline policy JSON.
#![no_main]

use coffer_operator::crd::AccessMode;
use coffer_operator::policy::{Grant, fail_closed_policy, identity_policy};
use coffer_server::iam::{Decision, Request, RequestContext};
use libfuzzer_sys::fuzz_target;

fn access(word: &str) -> Option<AccessMode> {
    Some(match word {
        "ReadOnly" => AccessMode::ReadOnly,
        "ReadWrite" => AccessMode::ReadWrite,
        "WriteOnly" => AccessMode::WriteOnly,
        "Admin" => AccessMode::Admin,
        _ => return None,
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut sections = text.splitn(3, "\n\n");
    let grants: Vec<Grant> = sections
        .next()
        .unwrap_or("")
        .lines()
        .filter_map(|line| {
            let mut words = line.split(' ');
            let bucket = words.next()?.to_owned();
            let access = access(words.next()?)?;
            let prefix = words.next().map(str::to_owned);
            Some(Grant {
                bucket,
                access,
                prefix,
            })
        })
        .collect();
    let requests: Vec<(&str, &str)> = sections
        .next()
        .unwrap_or("")
        .lines()
        .filter_map(|line| line.split_once(' '))
        .collect();
    let inline = sections.next();

    let granted = identity_policy(&grants, None).expect("grants alone always make a policy");
    let narrowed = identity_policy(&grants, inline);
    let fail_closed = fail_closed_policy(&grants, inline);
    let context = RequestContext::default();
    for (action, resource) in requests {
        let request = Request {
            action,
            resource,
            principal: Some("AKFUZZ"),
            context: &context,
        };
        let by_grants = granted.evaluate(&request, false);
        if let Ok(policy) = &narrowed {
            if policy.evaluate(&request, false) == Decision::Allow {
                assert_eq!(by_grants, Decision::Allow, "the inline policy widened {action} on {resource}");
            }
        }
        if fail_closed.evaluate(&request, false) == Decision::Allow {
            assert_eq!(by_grants, Decision::Allow, "the fail-closed policy widened {action} on {resource}");
        }
    }
});
