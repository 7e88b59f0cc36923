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

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = &self.path;
        match self.kind {
            ErrorKind::Required => write!(f, "{path}: Required value")?,
            ErrorKind::Invalid => write!(f, "{path}: Invalid value")?,
            ErrorKind::NotSupported => write!(f, "{path}: Unsupported value")?,
            ErrorKind::Duplicate => write!(f, "{path}: Duplicate value")?,
            ErrorKind::TooMany => write!(f, "{path}: Too many")?,
            ErrorKind::TooLong => write!(f, "{path}: Too long")?,
            ErrorKind::Forbidden => write!(f, "{path}: Forbidden")?,
            ErrorKind::Unknown => return write!(f, "unknown field \"{path}\""),
        }
        if let Some(value) = &self.value {
            write!(f, ": {value}")?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
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
