//! CEL rules that need the optional library (`optMap`, `optFlatMap`, `orValue`, `hasValue`,
//! `.?field`, `[?key]`, `optional.of`…, or `optionalOldSelf`, which binds `oldSelf` as an
//! optional). The CEL implementation here (kube-cel 0.8 on cel 0.13) does not evaluate them: a
//! CRD with such a rule is refused when it is created, naming the rule and the function, rather
//! than accepted and then failing every write of its objects.

use serde_json::Value;

/// What marks a use of the optional library, and how an error names it.
const USES: [(&str, &str); 9] = [
    (".?", ".? (optional field selection)"),
    ("[?", "[?] (optional index)"),
    ("optMap(", "optMap"),
    ("optFlatMap(", "optFlatMap"),
    ("orValue(", "orValue"),
    ("hasValue(", "hasValue"),
    ("optional.of", "optional.of"),
    ("optional.none", "optional.none"),
    (".or(", "or (of optionals)"),
];

/// The first use of the optional library in `rule`, outside string literals.
pub(crate) fn optional_use(rule: &str) -> Option<&'static str> {
    let code = without_strings(rule);
    let compact: String = code.split_whitespace().collect();
    USES.iter()
        .find(|(needle, _)| compact.contains(needle))
        .map(|(_, name)| *name)
}

/// `rule` with its string literals emptied.
fn without_strings(rule: &str) -> String {
    let mut out = String::with_capacity(rule.len());
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in rule.chars() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
                out.push(c);
            }
        } else {
            if c == '"' || c == '\'' {
                quote = Some(c);
            }
            out.push(c);
        }
    }
    out
}

/// Every rule of `schema` (an `openAPIV3Schema`) that needs the optional library: its path and
/// what it uses.
pub(crate) fn optional_rules(schema: &Value) -> Vec<String> {
    let mut found = Vec::new();
    walk(schema, "", &mut found);
    found
}

fn walk(schema: &Value, path: &str, found: &mut Vec<String>) {
    let Some(map) = schema.as_object() else {
        return;
    };
    if let Some(Value::Array(rules)) = map.get("x-kubernetes-validations") {
        for (i, rule) in rules.iter().enumerate() {
            let text = rule.get("rule").and_then(Value::as_str).unwrap_or_default();
            let at = format!("{path}x-kubernetes-validations[{i}]");
            if rule.get("optionalOldSelf").and_then(Value::as_bool) == Some(true) {
                found.push(format!(
                    "{at}: optionalOldSelf binds oldSelf as a CEL optional, which this server cannot evaluate"
                ));
            } else if let Some(function) = optional_use(text) {
                found.push(format!(
                    "{at}.rule: {text:?} uses {function} from the CEL optional library, which this server cannot evaluate"
                ));
            }
        }
    }
    if let Some(Value::Object(properties)) = map.get("properties") {
        for (name, sub) in properties {
            walk(sub, &format!("{path}properties[{name}]."), found);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(sub) = map.get(key) {
            walk(sub, &format!("{path}{key}."), found);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn optional_syntax_and_functions_are_found() {
        for (rule, uses) in [
            ("self.?spec.orValue(1) > 0", ".? (optional field selection)"),
            ("self.labels[?'a'].hasValue()", "[?] (optional index)"),
            ("oldSelf.optMap(o, o.x).orValue(true)", "optMap"),
            ("optional.of(1).hasValue()", "hasValue"),
            ("x.optFlatMap(y, y)", "optFlatMap"),
        ] {
            assert_eq!(optional_use(rule), Some(uses), "{rule}");
        }
        for rule in [
            "self.a == 'x.?y'",
            "self.min <= self.max",
            "has(self.spec) && \"[?\" != ''",
            "self.orders.size() > 0",
        ] {
            assert_eq!(optional_use(rule), None, "{rule}");
        }
    }

    #[test]
    fn rules_are_named_by_their_path() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object",
            "x-kubernetes-validations": [{"rule": "self.x > 0"}, {"rule": "self.?y.orValue(0) >= 0"}],
            "properties": {"items": {"type": "array", "items": {"type": "object",
                "x-kubernetes-validations": [{"rule": "self == oldSelf", "optionalOldSelf": true}]}}}}}});
        let found = optional_rules(&schema);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].starts_with("properties[spec].x-kubernetes-validations[1].rule:"),
            "{}",
            found[0]
        );
        assert!(
            found[1].starts_with(
                "properties[spec].properties[items].items.x-kubernetes-validations[0]: optionalOldSelf"
            ),
            "{}",
            found[1]
        );
    }
}
