//! Server-side `Table` output (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`): the
//! columns `kubectl get` prints, from a CRD's `additionalPrinterColumns`.

use serde_json::{Value, json};

use crate::registry::ResourceType;

/// Evaluates the JSONPath subset printer columns use: `.a.b`, `[0]` and
/// `[?(@.key=="value")]`.
pub fn json_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let mut current = obj;
    let mut rest = path.trim();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            current = current.get(&after[..end])?;
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']')?;
            let inner = &after[..end];
            rest = &after[end + 1..];
            if let Some(filter) = inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')')) {
                let (key, value) = filter.split_once("==")?;
                let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
                current = current
                    .as_array()?
                    .iter()
                    .find(|item| item.get(key.trim()).and_then(Value::as_str) == Some(value))?;
            } else {
                current = current.get(inner.parse::<usize>().ok()?)?;
            }
        } else {
            return None;
        }
    }
    Some(current)
}

/// A duration as `kubectl` prints ages: `45s`, `12m`, `3h`, `5d`.
pub fn human_age(seconds: i64) -> String {
    match seconds.max(0) {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn cell(value: Option<&Value>, column_type: &str) -> Value {
    match (value, column_type) {
        (None | Some(Value::Null), _) => Value::Null,
        (Some(Value::String(ts)), "date") => ts.parse::<jiff::Timestamp>().map_or(Value::Null, |t| {
            human_age(jiff::Timestamp::now().as_second() - t.as_second()).into()
        }),
        (Some(v), _) => v.clone(),
    }
}

/// The table of `items` of kind `t`.
pub fn table(t: &ResourceType, items: &[Value], metadata: &Value) -> Value {
    let mut columns = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name of the object", "priority": 0}),
    ];
    let printer: Vec<Value> = if t.printer_columns.is_empty() {
        vec![json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"})]
    } else {
        t.printer_columns.clone()
    };
    for c in &printer {
        columns.push(json!({
            "name": c.get("name").cloned().unwrap_or_default(),
            "type": if c.get("type").and_then(Value::as_str) == Some("date") { "string" } else { c.get("type").and_then(Value::as_str).unwrap_or("string") },
            "format": c.get("format").cloned().unwrap_or_else(|| "".into()),
            "description": c.get("description").cloned().unwrap_or_else(|| "".into()),
            "priority": c.get("priority").cloned().unwrap_or_else(|| 0.into()),
        }));
    }
    let rows: Vec<Value> = items
        .iter()
        .map(|obj| {
            let mut cells = vec![obj.pointer("/metadata/name").cloned().unwrap_or_default()];
            for c in &printer {
                let path = c.get("jsonPath").and_then(Value::as_str).unwrap_or_default();
                cells.push(cell(
                    json_path(obj, path),
                    c.get("type").and_then(Value::as_str).unwrap_or("string"),
                ));
            }
            json!({"cells": cells, "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                             "metadata": obj.get("metadata").cloned().unwrap_or_default()}})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata, "columnDefinitions": columns, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printer_column_paths() {
        let obj = json!({"status": {"conditions": [{"type": "Progressing", "status": "False"}, {"type": "Ready", "status": "True"}],
                                    "capacity": {"gpus": [{"product": "H100"}]}, "phase": "Running"}});
        assert_eq!(json_path(&obj, ".status.phase"), Some(&json!("Running")));
        assert_eq!(
            json_path(&obj, r#".status.conditions[?(@.type=="Ready")].status"#),
            Some(&json!("True"))
        );
        assert_eq!(
            json_path(&obj, ".status.capacity.gpus[0].product"),
            Some(&json!("H100"))
        );
        assert_eq!(json_path(&obj, ".status.missing"), None);
        assert_eq!(json_path(&obj, ".status.capacity.gpus[5]"), None);
    }

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(human_age(5), "5s");
        assert_eq!(human_age(600), "10m");
        assert_eq!(human_age(3 * 3600), "3h");
        assert_eq!(human_age(3 * 86400), "3d");
    }
}
