//! IAM condition operators (String*, Numeric*, Date*, Bool, IpAddress, Null, with
//! `...IfExists` and `ForAnyValue:`/`ForAllValues:`) over the request's context keys.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use super::OneOrMany;

/// `{"StringEquals": {"s3:prefix": ["a/", "b/"]}, ...}`; values may be JSON
/// strings, numbers or booleans.
pub type ConditionBlock = BTreeMap<String, BTreeMap<String, OneOrMany<serde_json::Value>>>;

/// The condition keys of one request (`aws:SourceIp`, `s3:prefix`, ...),
/// looked up case-insensitively.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    values: HashMap<String, Vec<String>>,
}

impl RequestContext {
    pub fn insert(&mut self, key: &str, value: impl Into<String>) {
        self.values
            .entry(key.to_ascii_lowercase())
            .or_default()
            .push(value.into());
    }

    /// Drops every value of a key (a check about another object than the
    /// request line's, such as a copy source, must not see its `versionId`).
    pub fn remove(&mut self, key: &str) {
        self.values.remove(&key.to_ascii_lowercase());
    }

    pub fn get(&self, key: &str) -> Option<&[String]> {
        self.values
            .get(&key.to_ascii_lowercase())
            .map(Vec::as_slice)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    NumericEquals,
    NumericNotEquals,
    NumericLessThan,
    NumericLessThanEquals,
    NumericGreaterThan,
    NumericGreaterThanEquals,
    DateEquals,
    DateNotEquals,
    DateLessThan,
    DateLessThanEquals,
    DateGreaterThan,
    DateGreaterThanEquals,
    Bool,
    IpAddress,
    NotIpAddress,
    Null,
}

impl Op {
    fn parse(name: &str) -> Option<Op> {
        Some(match name {
            "StringEquals" => Op::StringEquals,
            "StringNotEquals" => Op::StringNotEquals,
            "StringEqualsIgnoreCase" => Op::StringEqualsIgnoreCase,
            "StringNotEqualsIgnoreCase" => Op::StringNotEqualsIgnoreCase,
            "StringLike" => Op::StringLike,
            "StringNotLike" => Op::StringNotLike,
            "NumericEquals" => Op::NumericEquals,
            "NumericNotEquals" => Op::NumericNotEquals,
            "NumericLessThan" => Op::NumericLessThan,
            "NumericLessThanEquals" => Op::NumericLessThanEquals,
            "NumericGreaterThan" => Op::NumericGreaterThan,
            "NumericGreaterThanEquals" => Op::NumericGreaterThanEquals,
            "DateEquals" => Op::DateEquals,
            "DateNotEquals" => Op::DateNotEquals,
            "DateLessThan" => Op::DateLessThan,
            "DateLessThanEquals" => Op::DateLessThanEquals,
            "DateGreaterThan" => Op::DateGreaterThan,
            "DateGreaterThanEquals" => Op::DateGreaterThanEquals,
            "Bool" => Op::Bool,
            "IpAddress" => Op::IpAddress,
            "NotIpAddress" => Op::NotIpAddress,
            "Null" => Op::Null,
            _ => return None,
        })
    }

    /// Negated operators are true when the key is absent from the request.
    fn is_negated(self) -> bool {
        matches!(
            self,
            Op::StringNotEquals
                | Op::StringNotEqualsIgnoreCase
                | Op::StringNotLike
                | Op::NumericNotEquals
                | Op::DateNotEquals
                | Op::NotIpAddress
        )
    }

    /// Whether one request value matches one policy value.
    fn matches(self, actual: &str, expected: &str) -> bool {
        match self {
            Op::StringEquals => actual == expected,
            Op::StringNotEquals => actual != expected,
            Op::StringEqualsIgnoreCase => actual.eq_ignore_ascii_case(expected),
            Op::StringNotEqualsIgnoreCase => !actual.eq_ignore_ascii_case(expected),
            Op::StringLike => super::glob_match(expected, actual),
            Op::StringNotLike => !super::glob_match(expected, actual),
            Op::NumericEquals
            | Op::NumericNotEquals
            | Op::NumericLessThan
            | Op::NumericLessThanEquals
            | Op::NumericGreaterThan
            | Op::NumericGreaterThanEquals => {
                match (actual.parse::<f64>(), expected.parse::<f64>()) {
                    (Ok(a), Ok(e)) => compare(self, a.partial_cmp(&e)),
                    _ => false,
                }
            }
            Op::DateEquals
            | Op::DateNotEquals
            | Op::DateLessThan
            | Op::DateLessThanEquals
            | Op::DateGreaterThan
            | Op::DateGreaterThanEquals => match (parse_date(actual), parse_date(expected)) {
                (Some(a), Some(e)) => compare(self, Some(a.cmp(&e))),
                _ => false,
            },
            Op::Bool => actual.eq_ignore_ascii_case(expected),
            Op::IpAddress => ip_in(actual, expected),
            Op::NotIpAddress => !ip_in(actual, expected),
            // Null is decided on presence alone, in `evaluate_key`.
            Op::Null => false,
        }
    }
}

fn compare(op: Op, ordering: Option<std::cmp::Ordering>) -> bool {
    use std::cmp::Ordering::{Equal, Greater, Less};
    let Some(o) = ordering else { return false };
    match op {
        Op::NumericEquals | Op::DateEquals => o == Equal,
        Op::NumericNotEquals | Op::DateNotEquals => o != Equal,
        Op::NumericLessThan | Op::DateLessThan => o == Less,
        Op::NumericLessThanEquals | Op::DateLessThanEquals => o != Greater,
        Op::NumericGreaterThan | Op::DateGreaterThan => o == Greater,
        Op::NumericGreaterThanEquals | Op::DateGreaterThanEquals => o != Less,
        _ => false,
    }
}

/// Dates in policies are ISO 8601 or epoch seconds; compared as epoch seconds.
fn parse_date(text: &str) -> Option<i64> {
    if let Ok(epoch) = text.parse::<i64>() {
        return Some(epoch);
    }
    let format = time::format_description::well_known::Rfc3339;
    if let Ok(t) = time::OffsetDateTime::parse(text, &format) {
        return Some(t.unix_timestamp());
    }
    let date = time::Date::parse(
        text,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()?;
    Some(date.midnight().assume_utc().unix_timestamp())
}

fn ip_in(actual: &str, cidr: &str) -> bool {
    let Ok(ip) = actual.parse::<IpAddr>() else {
        return false;
    };
    if let Ok(net) = cidr.parse::<ipnet::IpNet>() {
        return net.contains(&ip);
    }
    cidr.parse::<IpAddr>().is_ok_and(|c| c == ip)
}

fn value_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Splits `ForAnyValue:StringLikeIfExists` into its set qualifier, operator and suffix.
fn parse_operator(name: &str) -> Option<(Option<&str>, Op, bool)> {
    let (set, rest) = match name.split_once(':') {
        Some((set @ ("ForAnyValue" | "ForAllValues"), rest)) => (Some(set), rest),
        Some(_) => return None,
        None => (None, name),
    };
    let (base, if_exists) = match rest.strip_suffix("IfExists") {
        Some(base) => (base, true),
        None => (rest, false),
    };
    Op::parse(base).map(|op| (set, op, if_exists))
}

/// Rejects unknown operators when a policy is stored, not when it is evaluated.
pub(super) fn validate(block: &ConditionBlock) -> Result<(), String> {
    for name in block.keys() {
        if parse_operator(name).is_none() {
            return Err(format!("unknown condition operator {name}"));
        }
    }
    Ok(())
}

/// All operators and all keys of a block must hold (AND); any listed value may match (OR).
pub(super) fn evaluate(block: &ConditionBlock, context: &RequestContext) -> bool {
    block.iter().all(|(name, keys)| {
        let Some((set, op, if_exists)) = parse_operator(name) else {
            return false;
        };
        keys.iter().all(|(key, expected)| {
            let expected: Vec<String> = expected.iter().map(value_text).collect();
            evaluate_key(set, op, if_exists, context.get(key), &expected)
        })
    })
}

fn evaluate_key(
    set: Option<&str>,
    op: Op,
    if_exists: bool,
    actual: Option<&[String]>,
    expected: &[String],
) -> bool {
    if op == Op::Null {
        let absent = actual.is_none_or(<[String]>::is_empty);
        return expected
            .iter()
            .any(|e| e.eq_ignore_ascii_case(&absent.to_string()));
    }
    let Some(actual) = actual.filter(|a| !a.is_empty()) else {
        return if_exists || op.is_negated() || set == Some("ForAllValues");
    };
    let value_matches = |a: &String| {
        if op.is_negated() {
            expected.iter().all(|e| op.matches(a, e))
        } else {
            expected.iter().any(|e| op.matches(a, e))
        }
    };
    match set {
        Some("ForAllValues") => actual.iter().all(value_matches),
        _ => actual.iter().any(value_matches),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(json: &str) -> ConditionBlock {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn string_like_on_prefix_and_missing_key() {
        let b = block(r#"{"StringLike": {"s3:prefix": ["home/*", "shared/"]}}"#);
        let mut ctx = RequestContext::default();
        assert!(!evaluate(&b, &ctx), "absent key fails a positive operator");
        ctx.insert("s3:prefix", "home/alice/");
        assert!(evaluate(&b, &ctx));
        let mut other = RequestContext::default();
        other.insert("s3:prefix", "etc/");
        assert!(!evaluate(&b, &other));
    }

    #[test]
    fn negated_operator_and_if_exists_hold_for_absent_keys() {
        let ctx = RequestContext::default();
        assert!(evaluate(
            &block(r#"{"StringNotEquals": {"s3:x-amz-acl": "public-read"}}"#),
            &ctx
        ));
        assert!(evaluate(
            &block(r#"{"StringEqualsIfExists": {"s3:x-amz-acl": "private"}}"#),
            &ctx
        ));
        assert!(evaluate(
            &block(r#"{"Null": {"s3:x-amz-acl": "true"}}"#),
            &ctx
        ));
    }

    #[test]
    fn ip_numeric_bool_and_date_operators() {
        let mut ctx = RequestContext::default();
        ctx.insert("aws:SourceIp", "10.1.2.3");
        ctx.insert("s3:max-keys", "50");
        ctx.insert("aws:SecureTransport", "false");
        ctx.insert("aws:CurrentTime", "2026-11-22T10:00:00Z");
        assert!(evaluate(
            &block(r#"{"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}"#),
            &ctx
        ));
        assert!(!evaluate(
            &block(r#"{"IpAddress": {"aws:SourceIp": "192.168.0.0/16"}}"#),
            &ctx
        ));
        assert!(evaluate(
            &block(r#"{"NotIpAddress": {"aws:SourceIp": "192.168.0.0/16"}}"#),
            &ctx
        ));
        assert!(evaluate(
            &block(r#"{"NumericLessThanEquals": {"s3:max-keys": 100}}"#),
            &ctx
        ));
        assert!(!evaluate(
            &block(r#"{"NumericGreaterThan": {"s3:max-keys": "100"}}"#),
            &ctx
        ));
        assert!(evaluate(
            &block(r#"{"Bool": {"aws:SecureTransport": false}}"#),
            &ctx
        ));
        assert!(evaluate(
            &block(r#"{"DateLessThan": {"aws:CurrentTime": "2027-01-01T00:00:00Z"}}"#),
            &ctx
        ));
        assert!(!evaluate(
            &block(r#"{"DateGreaterThan": {"aws:CurrentTime": "2027-01-01"}}"#),
            &ctx
        ));
    }

    #[test]
    fn unknown_operator_is_rejected() {
        assert!(validate(&block(r#"{"StringSortOf": {"a": "b"}}"#)).is_err());
        assert!(validate(&block(r#"{"ForAnyValue:StringLikeIfExists": {"a": "b"}}"#)).is_ok());
    }
}
