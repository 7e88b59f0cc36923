//! Field errors in the form the Kubernetes API server reports them (`field.Error`).

use std::fmt;

/// What is wrong with a field. Mirrors `k8s.io/apimachinery/pkg/util/validation/field.ErrorType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A required field is missing.
    Required,
    /// The value is of the wrong type or out of range.
    Invalid,
    /// The value is not one of the allowed values.
    NotSupported,
    /// The value repeats an earlier list entry that must be unique.
    Duplicate,
    /// A list or map has too many entries.
    TooMany,
    /// A string is too long.
    TooLong,
    /// The field is not allowed here.
    Forbidden,
    /// The field is not in the schema (rejected under strict field validation, pruned otherwise).
    Unknown,
}

impl ErrorKind {
    /// The `reason` Kubernetes puts in a `StatusCause` for this kind of error.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Required => "FieldValueRequired",
            Self::Invalid => "FieldValueInvalid",
            Self::NotSupported => "FieldValueNotSupported",
            Self::Duplicate => "FieldValueDuplicate",
            Self::TooMany => "FieldValueTooMany",
            Self::TooLong => "FieldValueTooLong",
            Self::Forbidden => "FieldValueForbidden",
            Self::Unknown => "FieldValueUnknown",
        }
    }
}

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field, for example `spec.opponents[1].name`.
    pub path: String,
    /// What is wrong.
    pub kind: ErrorKind,
    /// The offending value, rendered as Kubernetes does (strings quoted), when it helps.
    pub value: Option<String>,
    /// Details for people.
    pub detail: String,
}

impl FieldError {
    pub(crate) fn new(
        path: &str,
        kind: ErrorKind,
        value: Option<&serde_json::Value>,
        detail: String,
    ) -> Self {
        Self {
            path: path.to_owned(),
            kind,
            value: value.map(render_value),
            detail,
        }
    }
}

impl FieldError {
    /// The message without the field path, as a `StatusCause` carries it: `Invalid value: 5:
    /// …`, `Required value`.
    pub fn body(&self) -> String {
        let mut body = match self.kind {
            ErrorKind::Required => "Required value",
            ErrorKind::Invalid => "Invalid value",
            ErrorKind::NotSupported => "Unsupported value",
            ErrorKind::Duplicate => "Duplicate value",
            ErrorKind::TooMany => "Too many",
            ErrorKind::TooLong => "Too long",
            ErrorKind::Forbidden => "Forbidden",
            ErrorKind::Unknown => return format!("unknown field \"{}\"", self.path),
        }
        .to_owned();
        if let Some(value) = &self.value {
            body.push_str(": ");
            body.push_str(value);
        }
        if !self.detail.is_empty() {
            body.push_str(": ");
            body.push_str(&self.detail);
        }
        body
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ErrorKind::Unknown => f.write_str(&self.body()),
            _ => write!(f, "{}: {}", self.path, self.body()),
        }
    }
}

/// Renders a value for an error message: scalars as JSON, containers by their type, and long
/// strings cut short, so a huge value cannot blow up an error response.
pub(crate) fn render_value(value: &serde_json::Value) -> String {
    const MAX: usize = 64;
    match value {
        serde_json::Value::Object(_) => "\"object\"".to_owned(),
        serde_json::Value::Array(_) => "\"array\"".to_owned(),
        serde_json::Value::String(s) if s.chars().count() > MAX => {
            let cut: String = s.chars().take(MAX).collect();
            format!("\"{cut}...\"")
        }
        other => other.to_string(),
    }
}

/// Joins a child field name onto a path.
pub(crate) fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// Joins a list index onto a path.
pub(crate) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// Joins a map key onto a path.
pub(crate) fn key(path: &str, k: &str) -> String {
    format!("{path}[{k}]")
}
