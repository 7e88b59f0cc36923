//! `@ringrift {json}` report lines of the workload contract (DESIGN.md section 6).
//!
//! A report is one line on the process's output: the prefix `@ringrift `, then a JSON object
//! with any of `done`, `total`, `unit` (progress), `metrics` (an object of numbers) and
//! `checkpoint` (a file just written under the output directory). Any other line is log.

use std::collections::BTreeMap;

pub use ringrift_contract::PREFIX;
use ringrift_crds::task::Progress;

/// Longest report line accepted; longer ones are logged, not parsed.
pub const MAX_REPORT: usize = 16 * 1024;
/// Most metrics kept per task.
pub const MAX_METRICS: usize = 64;

/// One parsed report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Progress, when the line had `done`.
    pub progress: Option<Progress>,
    /// Metrics it carried.
    pub metrics: BTreeMap<String, f64>,
    /// A checkpoint announced: its path under the output directory, checked to stay inside.
    pub checkpoint: Option<String>,
}

/// Whether an announced checkpoint path stays inside the output directory: one or two plain
/// components (`step-400.ckpt`, `checkpoints/step-400.ckpt`), no `..`, no absolute path.
pub fn checkpoint_path_ok(path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    (1..=2).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && *p != "." && *p != ".." && !p.contains('\\') && p.len() <= 255)
}

/// Parses one output line: `None` for a plain log line, `Some(Err)` with the reason for a
/// report that cannot be read.
pub fn parse(line: &str) -> Option<Result<Report, String>> {
    let body = line.strip_prefix(PREFIX)?;
    if body.len() > MAX_REPORT {
        return Some(Err(format!("report longer than {MAX_REPORT} bytes")));
    }
    let parsed = match ringrift_contract::Report::from_json(body.trim_end()) {
        Ok(line) => line,
        Err(e) => return Some(Err(format!("invalid report: {e}"))),
    };
    if parsed.metrics.len() > MAX_METRICS {
        return Some(Err(format!("more than {MAX_METRICS} metrics in one report")));
    }
    if parsed.metrics.keys().any(|k| k.is_empty() || k.len() > 63) {
        return Some(Err("metric names must be 1 to 63 characters".into()));
    }
    if let Some(c) = &parsed.checkpoint
        && !checkpoint_path_ok(c)
    {
        return Some(Err(format!(
            "checkpoint {c:?} is not a file under the output directory (`name` or `dir/name`)"
        )));
    }
    let progress = match (parsed.done, parsed.total) {
        (Some(done), total) => Some(Progress {
            done,
            total: total.unwrap_or(0),
            unit: parsed
                .unit
                .filter(|u| !u.is_empty())
                .map(|u| u.chars().take(32).collect()),
        }),
        (None, Some(_)) => return Some(Err("`total` without `done`".into())),
        (None, None) => None,
    };
    Some(Ok(Report {
        progress,
        metrics: parsed
            .metrics
            .into_iter()
            .filter(|(_, v)| v.is_finite())
            .collect(),
        checkpoint: parsed.checkpoint,
    }))
}

/// Progress for people: `3/10 games`, or `3 games` without a total.
pub fn text(p: &Progress) -> String {
    let unit = p.unit.as_deref().map(|u| format!(" {u}")).unwrap_or_default();
    if p.total > 0 {
        format!("{}/{}{unit}", p.done, p.total)
    } else {
        format!("{}{unit}", p.done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_are_files_under_the_output_directory() {
        let r = parse(r#"@ringrift {"checkpoint": "checkpoints/step-400.ckpt"}"#)
            .unwrap()
            .unwrap();
        assert_eq!(r.checkpoint.as_deref(), Some("checkpoints/step-400.ckpt"));
        for bad in [
            "../x",
            "/etc/passwd",
            "a/b/c",
            "",
            "a//b",
            "./x",
            "checkpoints/..",
        ] {
            let line = format!(r#"@ringrift {{"checkpoint": {bad:?}}}"#);
            assert!(parse(&line).unwrap().is_err(), "{bad}");
        }
    }

    #[test]
    fn plain_lines_are_log() {
        assert_eq!(parse("hello"), None);
        assert_eq!(parse("@ringriftish {}"), None);
        assert_eq!(parse(" @ringrift {}"), None);
    }

    #[test]
    fn progress_and_metrics() {
        let r =
            parse(r#"@ringrift {"done": 3, "total": 10, "unit": "games", "metrics": {"games_per_s": 1.5}}"#)
                .unwrap()
                .unwrap();
        let p = r.progress.unwrap();
        assert_eq!((p.done, p.total, p.unit.as_deref()), (3, 10, Some("games")));
        assert!((r.metrics["games_per_s"] - 1.5).abs() < 1e-12);
        assert_eq!(text(&p), "3/10 games");
    }

    #[test]
    fn metrics_alone() {
        let r = parse(r#"@ringrift {"metrics": {"loss": 0.25}}"#)
            .unwrap()
            .unwrap();
        assert!(r.progress.is_none());
        assert!((r.metrics["loss"] - 0.25).abs() < 1e-12);
    }

    #[test]
    fn bad_reports_say_why() {
        for (line, why) in [
            ("@ringrift {", "invalid report"),
            ("@ringrift []", "invalid report"),
            (r#"@ringrift {"done": -1}"#, "invalid report"),
            (r#"@ringrift {"done": 1, "bogus": 2}"#, "unknown field"),
            (r#"@ringrift {"total": 2}"#, "without `done`"),
            (r#"@ringrift {"metrics": {"loss": "high"}}"#, "invalid report"),
        ] {
            let err = parse(line).unwrap().unwrap_err();
            assert!(err.contains(why), "{line}: {err}");
        }
        let long = format!(
            "@ringrift {{\"done\": 1, \"unit\": \"{}\"}}",
            "x".repeat(MAX_REPORT)
        );
        assert!(parse(&long).unwrap().is_err());
    }

    #[test]
    fn units_are_bounded_and_totals_optional() {
        let r = parse(&format!(
            r#"@ringrift {{"done": 4, "unit": "{}"}}"#,
            "u".repeat(100)
        ))
        .unwrap()
        .unwrap();
        let p = r.progress.unwrap();
        assert_eq!(p.unit.unwrap().len(), 32);
        assert_eq!(
            text(&Progress {
                done: 4,
                total: 0,
                unit: None
            }),
            "4"
        );
    }
}
