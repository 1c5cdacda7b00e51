//! Validation of a document against a CRD's structural OpenAPI v3 schema: types,
//! required and unknown fields, enums, patterns, lengths, bounds, nullability and
//! int-or-string — what the API server checks before CEL rules.

use serde_json::Value;

/// All the violations in `value`, each with its JSON path.
pub fn validate(schema: &Value, value: &Value) -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    check(schema, value, "", &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn check(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    let here = if path.is_empty() { "<root>" } else { path };
    if value.is_null() {
        if schema["nullable"] != Value::Bool(true) {
            errors.push(format!("{here}: must not be null"));
        }
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        errors.push(format!("{here}: {value} is not one of {allowed:?}"));
    }
    if schema["x-kubernetes-int-or-string"] == Value::Bool(true) {
        if !(value.is_i64() || value.is_u64() || value.is_string()) {
            errors.push(format!("{here}: must be an integer or a string"));
        }
        if let (Some(text), Some(pattern)) = (value.as_str(), schema["pattern"].as_str()) {
            check_pattern(pattern, text, here, errors);
        }
        return;
    }
    match schema["type"].as_str() {
        Some("object") => check_object(schema, value, path, errors),
        Some("array") => {
            let Some(items) = value.as_array() else {
                errors.push(format!("{here}: must be an array"));
                return;
            };
            if let Some(min) = schema["minItems"].as_u64()
                && (items.len() as u64) < min
            {
                errors.push(format!("{here}: must have at least {min} items"));
            }
            for (i, item) in items.iter().enumerate() {
                check(&schema["items"], item, &format!("{path}[{i}]"), errors);
            }
        }
        Some("string") => {
            let Some(text) = value.as_str() else {
                errors.push(format!("{here}: must be a string"));
                return;
            };
            let len = text.chars().count() as u64;
            if schema["minLength"].as_u64().is_some_and(|min| len < min) {
                errors.push(format!("{here}: shorter than minLength"));
            }
            if schema["maxLength"].as_u64().is_some_and(|max| len > max) {
                errors.push(format!("{here}: longer than maxLength"));
            }
            if let Some(pattern) = schema["pattern"].as_str() {
                check_pattern(pattern, text, here, errors);
            }
        }
        Some("integer") | Some("number") => {
            let Some(n) = value.as_f64() else {
                errors.push(format!("{here}: must be a number"));
                return;
            };
            if schema["type"] == "integer" && !(value.is_i64() || value.is_u64()) {
                errors.push(format!("{here}: must be an integer"));
            }
            if schema["minimum"].as_f64().is_some_and(|min| n < min) {
                errors.push(format!("{here}: below minimum"));
            }
            if schema["maximum"].as_f64().is_some_and(|max| n > max) {
                errors.push(format!("{here}: above maximum"));
            }
        }
        Some("boolean") if !value.is_boolean() => errors.push(format!("{here}: must be a boolean")),
        Some("boolean") => {}
        Some(other) => errors.push(format!("{here}: unsupported schema type {other}")),
        None => {}
    }
}

fn check_object(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    let here = if path.is_empty() { "<root>" } else { path };
    let Some(fields) = value.as_object() else {
        errors.push(format!("{here}: must be an object"));
        return;
    };
    for required in schema["required"].as_array().into_iter().flatten() {
        if let Some(name) = required.as_str()
            && !fields.contains_key(name)
        {
            errors.push(format!("{here}: missing required field {name}"));
        }
    }
    let properties = schema["properties"].as_object();
    let preserve = schema["x-kubernetes-preserve-unknown-fields"] == Value::Bool(true);
    for (name, field) in fields {
        let child = format!("{path}.{name}");
        match properties.and_then(|p| p.get(name)) {
            Some(field_schema) => check(field_schema, field, &child, errors),
            None if schema["additionalProperties"].is_object() => {
                check(&schema["additionalProperties"], field, &child, errors)
            }
            None if preserve => {}
            None => errors.push(format!("{child}: unknown field")),
        }
    }
}

fn check_pattern(pattern: &str, text: &str, here: &str, errors: &mut Vec<String>) {
    match regex::Regex::new(pattern) {
        Ok(re) if re.is_match(text) => {}
        Ok(_) => errors.push(format!("{here}: {text:?} does not match {pattern}")),
        Err(e) => errors.push(format!("{here}: invalid pattern {pattern}: {e}")),
    }
}
