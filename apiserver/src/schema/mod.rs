//! Admission of custom resources against their CRD's OpenAPI v3 schema, as the Kubernetes API
//! server does it: prune unknown fields, apply defaults, validate the schema's rules, then
//! evaluate the `x-kubernetes-validations` CEL rules (with `oldSelf` on updates).

mod field_error;
mod normalize;
mod optional;
mod pattern;
mod structural;
mod validate;

use serde_json::Value;

pub use field_error::{ErrorKind, FieldError};
pub use normalize::prune_and_default;
pub use structural::check_structural;
pub use validate::{RootSchema, validate, validate_resource};

/// A schema that cannot be used to admit objects.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The schema breaks the structural-schema rules.
    #[error("failed to accept schema: not structural: {}", join(.0))]
    NotStructural(Vec<FieldError>),
    /// A CEL rule does not compile.
    #[error("failed to compile CEL rules: {}", .0.join("; "))]
    Cel(Vec<String>),
    /// A CEL rule needs the optional library, which is not evaluated here.
    #[error("failed to accept CEL rules: {}", .0.join("; "))]
    OptionalCel(Vec<String>),
    /// The CRD has no such version, or the version has no schema.
    #[error("failed to find schema: CRD has no schema for version {0:?}")]
    NoSchema(String),
}

fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The outcome of admitting one object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Admission {
    /// Paths of fields that were not in the schema and were pruned. Under strict field
    /// validation each one is an error; otherwise a warning.
    pub unknown_fields: Vec<String>,
    /// Violations of the schema and its CEL rules; empty means the object is valid.
    pub errors: Vec<FieldError>,
}

impl Admission {
    /// Every problem, unknown fields included, as strict field validation sees it.
    pub fn strict_errors(&self) -> Vec<FieldError> {
        self.unknown_fields
            .iter()
            .map(|p| FieldError::new(p, ErrorKind::Unknown, None, String::new()))
            .chain(self.errors.iter().cloned())
            .collect()
    }
}

/// Admits objects of one version of one CRD. Build once per schema: CEL rules are compiled in
/// [`ResourceValidator::new`].
pub struct ResourceValidator {
    schema: Value,
    /// The schema without the server-owned root fields, for [`validate_resource`].
    root: RootSchema,
    compiled: kube_cel::CompiledSchema,
    /// Each top-level property's schema compiled on its own, for updates: an unchanged
    /// property is not evaluated again (validation ratcheting, as in Kubernetes 1.33).
    properties: Vec<(String, kube_cel::CompiledSchema)>,
    /// Whether the root itself has rules (then updates evaluate the whole object).
    root_rules: bool,
    cel: kube_cel::Validator,
}

impl std::fmt::Debug for ResourceValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceValidator").finish_non_exhaustive()
    }
}

impl ResourceValidator {
    /// Checks that `schema` (an `openAPIV3Schema`) is structural and that its CEL rules compile.
    ///
    /// # Errors
    /// [`SchemaError::NotStructural`] or [`SchemaError::Cel`].
    pub fn new(schema: Value) -> Result<Self, SchemaError> {
        let problems = check_structural(&schema, "openAPIV3Schema");
        if !problems.is_empty() {
            return Err(SchemaError::NotStructural(problems));
        }
        let compiled = kube_cel::compile_schema(&schema);
        let cel_errors: Vec<String> = compiled
            .compilation_errors()
            .iter()
            .map(ToString::to_string)
            .collect();
        if !cel_errors.is_empty() {
            return Err(SchemaError::Cel(cel_errors));
        }
        let optional = optional::optional_rules(&schema);
        if !optional.is_empty() {
            return Err(SchemaError::OptionalCel(optional));
        }
        let properties = schema
            .get("properties")
            .and_then(Value::as_object)
            .map(|props| {
                props
                    .iter()
                    .filter(|(_, sub)| sub.to_string().contains("x-kubernetes-validations"))
                    .map(|(name, sub)| (name.clone(), kube_cel::compile_schema(sub)))
                    .collect()
            })
            .unwrap_or_default();
        let root_rules = schema.get("x-kubernetes-validations").is_some();
        Ok(Self {
            root: RootSchema::new(&schema),
            schema,
            compiled,
            properties,
            root_rules,
            cel: kube_cel::Validator::new(),
        })
    }

    /// Builds the validator of `version` of a CRD given as JSON.
    ///
    /// # Errors
    /// [`SchemaError::NoSchema`] when the version or its schema is missing, else as [`Self::new`].
    pub fn for_crd_version(crd: &Value, version: &str) -> Result<Self, SchemaError> {
        let schema = crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .and_then(|versions| {
                versions
                    .iter()
                    .find(|v| v.get("name").and_then(Value::as_str) == Some(version))
            })
            .and_then(|v| v.pointer("/schema/openAPIV3Schema"))
            .ok_or_else(|| SchemaError::NoSchema(version.to_owned()))?;
        Self::new(schema.clone())
    }

    /// The schema this validator enforces.
    pub fn schema(&self) -> &Value {
        &self.schema
    }

    /// Prunes and defaults `object` in place, then validates it. `old` is the stored object on
    /// an update (for transition rules); it is expected to be normalized already.
    pub fn admit(&self, object: &mut Value, old: Option<&Value>) -> Admission {
        let unknown_fields = prune_and_default(&self.schema, object);
        let mut errors = Vec::new();
        validate_resource(&self.root, object, &mut errors);
        // CEL rules assume the types the schema promises; evaluate them only on a well-typed object.
        if errors.is_empty() {
            errors.extend(self.cel_errors(object, old));
        }
        Admission {
            unknown_fields,
            errors,
        }
    }

    /// The CEL rules' failures. A create evaluates every rule; an update evaluates the rules
    /// of the top-level properties that changed (with their old value for transition rules),
    /// or everything when the root has rules of its own.
    fn cel_errors(&self, object: &Value, old: Option<&Value>) -> Vec<FieldError> {
        let to_field_error = |prefix: &str, f: &kube_cel::ValidationError| {
            let path = match (prefix.is_empty(), f.field_path.is_empty()) {
                (true, _) => f.field_path.clone(),
                (false, true) => prefix.to_owned(),
                (false, false) if f.field_path.starts_with(['[', '.']) => {
                    format!("{prefix}{}", f.field_path)
                }
                (false, false) => format!("{prefix}.{}", f.field_path),
            };
            // The rule's `reason`, as upstream reports it (Invalid when it names none).
            let kind = match f.reason.as_deref() {
                Some("FieldValueForbidden") => ErrorKind::Forbidden,
                Some("FieldValueRequired") => ErrorKind::Required,
                Some("FieldValueDuplicate") => ErrorKind::Duplicate,
                _ => ErrorKind::Invalid,
            };
            FieldError::new(&path, kind, None, f.message.clone())
        };
        let Some(old) = old.filter(|_| !self.root_rules) else {
            return match self.cel.validate_compiled(&self.compiled, object, old) {
                Ok(()) => Vec::new(),
                Err(failures) => failures
                    .as_slice()
                    .iter()
                    .map(|f| to_field_error("", f))
                    .collect(),
            };
        };
        let mut errors = Vec::new();
        for (name, compiled) in &self.properties {
            let (Some(now), before) = (object.get(name), old.get(name)) else {
                continue;
            };
            if before == Some(now) {
                continue;
            }
            if let Err(failures) = self.cel.validate_compiled(compiled, now, before) {
                errors.extend(failures.as_slice().iter().map(|f| to_field_error(name, f)));
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn validator() -> ResourceValidator {
        ResourceValidator::new(json!({
            "type": "object",
            "properties": {
                "metadata": {"type": "object"},
                "spec": {
                    "type": "object",
                    "x-kubernetes-validations": [
                        {"rule": "self.min <= self.max", "message": "min must not exceed max"},
                        {"rule": "self.id == oldSelf.id", "message": "id is immutable", "fieldPath": ".id"}
                    ],
                    "properties": {
                        "min": {"type": "integer", "default": 0},
                        "max": {"type": "integer", "maximum": 100},
                        "id": {"type": "string"}
                    }
                }
            }
        }))
        .unwrap()
    }

    fn messages(a: &Admission) -> Vec<String> {
        a.errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn cel_rules_run_after_defaulting() {
        let mut obj = json!({"metadata": {"name": "x"}, "spec": {"max": -1, "id": "a"}});
        let a = validator().admit(&mut obj, None);
        assert_eq!(messages(&a), ["spec: Invalid value: min must not exceed max"]);
    }

    #[test]
    fn transition_rules_see_the_old_object() {
        let v = validator();
        let mut old = json!({"spec": {"max": 5, "id": "a"}});
        assert!(v.admit(&mut old, None).errors.is_empty());
        let mut new = json!({"spec": {"max": 5, "id": "b"}});
        let a = v.admit(&mut new, Some(&old));
        assert_eq!(messages(&a), ["spec.id: Invalid value: id is immutable"]);
    }

    #[test]
    fn an_unchanged_property_is_not_evaluated_again() {
        let v = validator();
        // Stored before the rule existed: min > max. A change elsewhere is still admitted,
        // a change to spec is checked.
        let old = json!({"metadata": {"name": "x"}, "spec": {"min": 9, "max": 5, "id": "a"}});
        let mut relabelled =
            json!({"metadata": {"name": "x", "labels": {"a": "b"}}, "spec": {"min": 9, "max": 5, "id": "a"}});
        assert!(v.admit(&mut relabelled, Some(&old)).errors.is_empty());
        let mut edited = json!({"metadata": {"name": "x"}, "spec": {"min": 9, "max": 6, "id": "a"}});
        let a = v.admit(&mut edited, Some(&old));
        assert_eq!(messages(&a), ["spec: Invalid value: min must not exceed max"]);
    }

    #[test]
    fn schema_errors_come_before_cel() {
        let mut obj = json!({"spec": {"max": 500, "min": 900, "id": "a"}});
        let a = validator().admit(&mut obj, None);
        assert_eq!(
            messages(&a),
            ["spec.max: Invalid value: 500: spec.max in body should be less than or equal to 100"]
        );
    }

    #[test]
    fn unknown_fields_are_reported_for_strict_mode() {
        let mut obj = json!({"spec": {"max": 1, "id": "a", "typo": 1}});
        let a = validator().admit(&mut obj, None);
        assert!(a.errors.is_empty());
        assert_eq!(a.unknown_fields, ["spec.typo"]);
        assert_eq!(a.strict_errors()[0].to_string(), "unknown field \"spec.typo\"");
    }

    #[test]
    fn bad_schemas_are_refused_with_the_reason() {
        let not_structural = ResourceValidator::new(json!({"type": "object", "properties": {"a": {}}}));
        assert!(matches!(not_structural, Err(SchemaError::NotStructural(_))));
        let bad_cel = ResourceValidator::new(
            json!({"type": "object", "x-kubernetes-validations": [{"rule": "self.a +"}]}),
        );
        assert!(matches!(bad_cel, Err(SchemaError::Cel(_))), "{bad_cel:?}");
        let optional = ResourceValidator::new(
            json!({"type": "object", "properties": {"spec": {"type": "object",
            "x-kubernetes-validations": [{"rule": "self.?a.orValue(0) >= 0"}], "properties": {"a": {"type": "integer"}}}}}),
        );
        let Err(SchemaError::OptionalCel(found)) = optional else {
            panic!("accepted: {optional:?}");
        };
        assert!(
            found[0].contains("x-kubernetes-validations[0].rule") && found[0].contains(".?"),
            "{found:?}"
        );
    }

    #[test]
    fn a_rule_reports_its_reason() {
        let v = ResourceValidator::new(json!({"type": "object", "properties": {"spec": {"type": "object",
            "x-kubernetes-validations": [{"rule": "self.n <= 3", "message": "too many", "reason": "FieldValueForbidden"}],
            "properties": {"n": {"type": "integer"}}}}}))
        .unwrap();
        let a = v.admit(&mut json!({"spec": {"n": 5}}), None);
        assert_eq!(a.errors.len(), 1);
        assert_eq!(a.errors[0].kind, ErrorKind::Forbidden);
        assert_eq!(messages(&a), ["spec: Forbidden: too many"]);
    }
}
