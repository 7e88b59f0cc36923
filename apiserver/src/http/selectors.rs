//! Label and field selectors, with the syntax of the Kubernetes API (`labelSelector=`,
//! `fieldSelector=` query parameters).

use serde_json::Value;

/// One requirement on a label or field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// `key=value` / `key==value`
    Equals(String, String),
    /// `key!=value` (also true when the key is absent)
    NotEquals(String, String),
    /// `key in (a,b)`
    In(String, Vec<String>),
    /// `key notin (a,b)` (also true when the key is absent)
    NotIn(String, Vec<String>),
    /// `key`
    Exists(String),
    /// `!key`
    DoesNotExist(String),
}

/// A parsed selector: every requirement must hold. Empty selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector(pub Vec<Requirement>);

/// Splits on commas outside parentheses.
fn split_requirements(s: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

fn valid_key(key: &str) -> bool {
    let name = key
        .rsplit_once('/')
        .map_or(key, |(prefix, name)| if prefix.is_empty() { "" } else { name });
    !name.is_empty()
        && name.len() <= 63
        && key.len() <= 316
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn valid_value(value: &str) -> bool {
    value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn set_values(list: &str) -> Option<Vec<String>> {
    let inner = list.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(
        inner
            .split(',')
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect(),
    )
}

/// Parses a label selector.
///
/// # Errors
/// A message naming the requirement that does not parse.
pub fn parse_labels(s: &str) -> Result<Selector, String> {
    let mut requirements = Vec::new();
    for part in split_requirements(s) {
        let bad = || format!("unable to parse requirement: {part:?}");
        let req = if let Some(key) = part.strip_prefix('!') {
            Requirement::DoesNotExist(key.trim().to_owned())
        } else if let Some((key, rest)) = part.split_once(" notin ") {
            Requirement::NotIn(key.trim().to_owned(), set_values(rest).ok_or_else(bad)?)
        } else if let Some((key, rest)) = part.split_once(" in ") {
            Requirement::In(key.trim().to_owned(), set_values(rest).ok_or_else(bad)?)
        } else if let Some((key, value)) = part.split_once("!=") {
            Requirement::NotEquals(key.trim().to_owned(), value.trim().to_owned())
        } else if let Some((key, value)) = part.split_once("==").or_else(|| part.split_once('=')) {
            Requirement::Equals(key.trim().to_owned(), value.trim().to_owned())
        } else {
            Requirement::Exists(part.to_owned())
        };
        let (key, values): (&str, Vec<&str>) = match &req {
            Requirement::Equals(k, v) | Requirement::NotEquals(k, v) => (k, vec![v.as_str()]),
            Requirement::In(k, vs) | Requirement::NotIn(k, vs) => {
                (k, vs.iter().map(String::as_str).collect())
            }
            Requirement::Exists(k) | Requirement::DoesNotExist(k) => (k, vec![]),
        };
        if !valid_key(key) || !values.iter().all(|v| valid_value(v)) {
            return Err(bad());
        }
        requirements.push(req);
    }
    Ok(Selector(requirements))
}

/// Parses a field selector: only `=`, `==` and `!=`, on the fields in `allowed`.
///
/// # Errors
/// A message naming the unsupported field or the requirement that does not parse.
pub fn parse_fields(s: &str, allowed: &[&str]) -> Result<Selector, String> {
    let mut requirements = Vec::new();
    for part in split_requirements(s) {
        let req = if let Some((key, value)) = part.split_once("!=") {
            Requirement::NotEquals(key.trim().to_owned(), value.trim().to_owned())
        } else if let Some((key, value)) = part.split_once("==").or_else(|| part.split_once('=')) {
            Requirement::Equals(key.trim().to_owned(), value.trim().to_owned())
        } else {
            return Err(format!(
                "invalid selector: {part:?}; expected field=value or field!=value"
            ));
        };
        let (Requirement::Equals(key, _) | Requirement::NotEquals(key, _)) = &req else {
            continue;
        };
        if !allowed.contains(&key.as_str()) {
            return Err(format!("field label not supported: {key}"));
        }
        requirements.push(req);
    }
    Ok(Selector(requirements))
}

impl Selector {
    /// Whether the labels (or fields) that `lookup` reads satisfy every requirement.
    pub fn matches<'a>(&self, lookup: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.0.iter().all(|req| match req {
            Requirement::Equals(k, v) => lookup(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => lookup(k) != Some(v.as_str()),
            Requirement::In(k, vs) => lookup(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            Requirement::NotIn(k, vs) => lookup(k).is_none_or(|l| vs.iter().all(|v| v != l)),
            Requirement::Exists(k) => lookup(k).is_some(),
            Requirement::DoesNotExist(k) => lookup(k).is_none(),
        })
    }

    /// Whether an object's labels satisfy this label selector.
    pub fn matches_labels(&self, object: &Value) -> bool {
        let labels = object.pointer("/metadata/labels").and_then(Value::as_object);
        self.matches(|k| labels.and_then(|l| l.get(k)).and_then(Value::as_str))
    }

    /// Whether an object's fields (dotted paths such as `metadata.name`) satisfy this field
    /// selector. An absent field reads as the empty string, as in Kubernetes.
    pub fn matches_fields(&self, object: &Value) -> bool {
        self.matches(|path| {
            let pointer = format!("/{}", path.replace('.', "/"));
            Some(object.pointer(&pointer).and_then(Value::as_str).unwrap_or(""))
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn labeled(labels: &Value) -> Value {
        json!({"metadata": {"name": "x", "namespace": "ns", "labels": labels}})
    }

    #[test]
    fn every_label_operator() {
        let obj = labeled(&json!({"app": "ringrift", "tier": "gpu", "ringrift.ai/agent": "node-1"}));
        let yes = [
            "",
            "app=ringrift",
            "app==ringrift",
            "app!=other",
            "missing!=x",
            "tier in (gpu,cpu)",
            "tier notin (cpu)",
            "missing notin (a)",
            "app",
            "!missing",
            "ringrift.ai/agent=node-1",
            "app=ringrift, tier in (gpu)",
        ];
        for s in yes {
            assert!(parse_labels(s).unwrap().matches_labels(&obj), "{s}");
        }
        let no = [
            "app=other",
            "tier in (cpu)",
            "tier notin (gpu,cpu)",
            "missing",
            "!app",
            "missing in (x)",
        ];
        for s in no {
            assert!(!parse_labels(s).unwrap().matches_labels(&obj), "{s}");
        }
    }

    #[test]
    fn bad_label_selectors_name_the_requirement() {
        for s in ["app in gpu", "a b=c", "app=bad value!", "=x", "app in (a"] {
            let err = parse_labels(s).unwrap_err();
            assert!(err.starts_with("unable to parse requirement"), "{s}: {err}");
        }
    }

    #[test]
    fn field_selectors_on_allowed_fields() {
        let obj = labeled(&json!({}));
        let allowed = ["metadata.name", "metadata.namespace", "spec.agent"];
        assert!(
            parse_fields("metadata.name=x", &allowed)
                .unwrap()
                .matches_fields(&obj)
        );
        assert!(
            parse_fields("metadata.namespace!=other,metadata.name==x", &allowed)
                .unwrap()
                .matches_fields(&obj)
        );
        assert!(
            parse_fields("spec.agent=", &allowed)
                .unwrap()
                .matches_fields(&obj),
            "absent reads as empty"
        );
        assert!(
            !parse_fields("metadata.name=y", &allowed)
                .unwrap()
                .matches_fields(&obj)
        );
        assert_eq!(
            parse_fields("status.phase=Running", &allowed).unwrap_err(),
            "field label not supported: status.phase"
        );
        assert!(parse_fields("metadata.name", &allowed).is_err());
    }
}
