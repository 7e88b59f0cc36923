//! The audit log: one JSON line per API request, naming who asked for what and the answer, so
//! that operators (and the chart's RBAC test) can see every call a component makes.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use serde_json::json;

use super::User;
use super::rbac::Attributes;

/// An append-only JSON-lines file.
#[derive(Debug)]
pub struct AuditLog {
    file: Mutex<std::fs::File>,
}

impl AuditLog {
    /// Opens (creates or appends to) the log.
    ///
    /// # Errors
    /// When the file cannot be opened for appending.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            file: Mutex::new(file),
        })
    }

    /// Records one resource request. A failed write is logged and otherwise ignored: the audit
    /// log never fails a request.
    pub fn record(&self, user: &User, user_agent: &str, attributes: &Attributes, code: u16) {
        let line = json!({
            "time": jiff::Timestamp::now().to_string(),
            "user": user.name,
            "groups": user.groups,
            "userAgent": user_agent,
            "verb": attributes.verb,
            "apiGroup": attributes.group,
            "resource": attributes.resource,
            "subresource": attributes.subresource,
            "namespace": attributes.namespace,
            "name": attributes.name,
            "code": code,
        });
        let mut text = line.to_string();
        text.push('\n');
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(e) = file.write_all(text.as_bytes()) {
            tracing::warn!(error = %e, "failed to write the audit log");
        }
    }
}
