//! `@ringrift {json}` report lines: progress and metrics a workload prints on its output.
//!
//! A report is one line: the prefix `@ringrift `, then a JSON object with any of `done`,
//! `total`, `unit` (progress) and `metrics` (an object of numbers). Unknown fields make the line
//! unreadable (the agent keeps it as log and counts it), so a typo never passes silently.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The prefix of a report line.
pub const PREFIX: &str = "@ringrift ";

/// One report, as a workload writes it and the agent reads it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// Units of work done so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done: Option<u64>,
    /// Units of work in all, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// What is counted (`games`, `steps`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Numbers by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
    /// A checkpoint just written: its path under the output directory (`checkpoints/<file>`
    /// or a plain file name). The agent keeps it whatever becomes of the attempt; the next
    /// attempt of the unit gets it as `RINGRIFT_RESUME_FROM`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
}

impl Report {
    /// Progress: `done` of `total` `unit`s.
    pub fn progress(done: u64, total: u64, unit: &str) -> Self {
        Self {
            done: Some(done),
            total: Some(total),
            unit: Some(unit.to_owned()),
            metrics: BTreeMap::new(),
            checkpoint: None,
        }
    }

    /// The same report with a metric added.
    #[must_use]
    pub fn metric(mut self, name: &str, value: f64) -> Self {
        self.metrics.insert(name.to_owned(), value);
        self
    }

    /// Reads the JSON after the prefix.
    ///
    /// # Errors
    /// The JSON is malformed, not an object, or has a field the contract does not know.
    pub fn from_json(body: &str) -> Result<Self, serde_json::Error> {
        if !body.trim_start().starts_with('{') {
            // A struct would also read from an array of its fields; a report is an object.
            return Err(serde::de::Error::custom("a report is a JSON object"));
        }
        serde_json::from_str(body)
    }
}

/// The whole line, prefix included (no newline).
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body = serde_json::to_string(self).map_err(|_| fmt::Error)?;
        write!(f, "{PREFIX}{body}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_report_reads_back() {
        let r = Report::progress(3, 10, "games").metric("games_per_s", 1.5);
        let line = r.to_string();
        assert_eq!(
            line,
            r#"@ringrift {"done":3,"total":10,"unit":"games","metrics":{"games_per_s":1.5}}"#
        );
        let back = Report::from_json(line.strip_prefix(PREFIX).unwrap()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = Report::from_json(r#"{"done": 1, "dnoe": 2}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `dnoe`"), "{e}");
        assert!(Report::from_json("[]").is_err());
        assert!(Report::from_json("[1, 2]").is_err());
    }

    #[test]
    fn metrics_alone_are_a_report() {
        let r = Report::from_json(r#"{"metrics": {"loss": 0.25}}"#).unwrap();
        assert_eq!(r.done, None);
        assert_eq!(r.metrics.get("loss"), Some(&0.25));
        assert_eq!(r.to_string(), r#"@ringrift {"metrics":{"loss":0.25}}"#);
    }
}
