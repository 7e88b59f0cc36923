//! The kinds the API server serves: a fixed set of built-in kinds, and the custom resources
//! that registered `CustomResourceDefinition`s add at run time.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::schema::{FieldError, ResourceValidator};
use crate::store::ResourceKey;
use crate::store::names::{NameRule, check_name};

mod builtins;
use builtins::builtins;

/// Where a custom resource keeps what its `/scale` subresource shows, as JSON pointers
/// (`/spec/replicas`), from the CRD's `subresources.scale` paths (`.spec.replicas`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalePaths {
    /// `specReplicasPath`.
    pub spec_replicas: String,
    /// `statusReplicasPath`.
    pub status_replicas: String,
    /// `labelSelectorPath`, if any.
    pub label_selector: Option<String>,
}

impl ScalePaths {
    fn of(scale: &Value) -> Option<Self> {
        let pointer = |field: &str| {
            scale
                .get(field)
                .and_then(Value::as_str)
                .map(|p| p.trim_start_matches('.').replace('.', "/"))
                .map(|p| format!("/{p}"))
        };
        Some(Self {
            spec_replicas: pointer("specReplicasPath")?,
            status_replicas: pointer("statusReplicasPath")?,
            label_selector: pointer("labelSelectorPath"),
        })
    }
}

/// One served kind at one group version.
#[derive(Debug, Clone)]
// Independent facts of a kind (scope, subresource, generation, review), as upstream keeps them.
#[allow(clippy::struct_excessive_bools)]
pub struct ResourceType {
    /// API group; empty for core.
    pub group: String,
    /// Version served.
    pub version: String,
    /// Plural resource name.
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Kind.
    pub kind: String,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Short names (`sp`, `cm`).
    pub short_names: Vec<String>,
    /// Categories (`ringrift`, `all`).
    pub categories: Vec<String>,
    /// Whether `status` goes through the `/status` subresource only.
    pub status_subresource: bool,
    /// Whether its objects keep `metadata.generation`.
    pub generation: bool,
    /// A review (access or identity): created only, answered at once, never stored.
    pub review: bool,
    /// The CRD's `scale` subresource: where its replicas and selector are.
    pub scale: Option<ScalePaths>,
    /// Its CRD is being deleted: objects are still read and deleted, no more are created.
    pub terminating: bool,
    /// The version its objects are stored at (a CRD's storage version; its own for built-ins).
    pub storage_version: String,
    /// Fields usable in field selectors besides `metadata.name` and `metadata.namespace`.
    pub selectable_fields: Vec<String>,
    /// Schema admission, for custom resources.
    pub validator: Option<Arc<ResourceValidator>>,
    /// The CRD's `additionalPrinterColumns`, for table output.
    pub printer_columns: Vec<Value>,
}

impl ResourceType {
    /// The storage key (group and plural; the same for every version). Events of
    /// `events.k8s.io` are the core group's, one resource seen through two versions, as
    /// upstream stores them.
    pub fn key(&self) -> ResourceKey {
        if self.group == "events.k8s.io" && self.plural == "events" {
            return ResourceKey::new("", "events");
        }
        ResourceKey::new(&self.group, &self.plural)
    }

    /// `apiVersion` of its objects.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The rule its names follow.
    pub fn name_rule(&self) -> NameRule {
        if self.group.is_empty() && self.plural == "namespaces" {
            NameRule::Label
        } else {
            NameRule::Subdomain
        }
    }
}

/// Every served kind, by group, version and plural.
#[derive(Debug, Clone)]
pub struct Registry {
    /// Shared: every request holds the kind it addresses without copying its schema.
    types: BTreeMap<(String, String, String), Arc<ResourceType>>,
}

impl Default for Registry {
    fn default() -> Self {
        let types = builtins()
            .into_iter()
            .map(|t| {
                (
                    (t.group.clone(), t.version.clone(), t.plural.clone()),
                    Arc::new(t),
                )
            })
            .collect();
        Self { types }
    }
}

/// The `CustomResourceDefinition` kind.
pub fn crd_key() -> ResourceKey {
    ResourceKey::new("apiextensions.k8s.io", "customresourcedefinitions")
}

impl Registry {
    /// The kind served at `group`/`version` as `plural`.
    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.shared(group, version, plural).map(|t| &**t)
    }

    /// The kind served at `group`/`version` as `plural`, to hold on to.
    pub fn shared(&self, group: &str, version: &str, plural: &str) -> Option<&Arc<ResourceType>> {
        self.types
            .get(&(group.to_owned(), version.to_owned(), plural.to_owned()))
    }

    /// Every served kind.
    pub fn all(&self) -> impl Iterator<Item = &ResourceType> {
        self.types.values().map(|t| &**t)
    }

    /// Groups with their versions, in a stable order (core excluded).
    pub fn groups(&self) -> BTreeMap<String, Vec<String>> {
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for t in self.all().filter(|t| !t.group.is_empty()) {
            let versions = groups.entry(t.group.clone()).or_default();
            if !versions.contains(&t.version) {
                versions.push(t.version.clone());
            }
        }
        groups
    }

    /// Registers (or re-registers) the served versions of a CRD.
    ///
    /// # Errors
    /// The field errors that make the CRD unacceptable; nothing is registered then.
    pub fn register_crd(&mut self, crd: &Value) -> Result<Vec<ResourceType>, Vec<FieldError>> {
        let types = crd_types(crd)?;
        self.unregister_crd(crd);
        for t in &types {
            self.types.insert(
                (t.group.clone(), t.version.clone(), t.plural.clone()),
                Arc::new(t.clone()),
            );
        }
        Ok(types)
    }

    /// Marks the kinds of a CRD being deleted: no more of their objects may be created.
    pub fn terminate_crd(&mut self, crd: &Value) {
        let (group, plural) = crd_resource(crd);
        for ((g, _, p), t) in &mut self.types {
            if g == group && p == plural && t.validator.is_some() {
                *t = Arc::new(ResourceType {
                    terminating: true,
                    ..ResourceType::clone(t)
                });
            }
        }
    }

    /// Removes a CRD's kinds.
    pub fn unregister_crd(&mut self, crd: &Value) {
        let (group, plural) = crd_resource(crd);
        if group.is_empty() || builtins().iter().any(|b| b.group == group) {
            return;
        }
        self.types.retain(|(g, _, p), _| !(g == group && p == plural));
    }
}

/// The group and plural a CRD defines.
pub fn crd_resource(crd: &Value) -> (&str, &str) {
    let text = |p: &str| crd.pointer(p).and_then(Value::as_str).unwrap_or_default();
    (text("/spec/group"), text("/spec/names/plural"))
}

fn field_error(path: &str, detail: &str) -> FieldError {
    FieldError {
        path: path.into(),
        kind: crate::schema::ErrorKind::Invalid,
        value: None,
        detail: detail.into(),
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// The CRD's group, plural and kind, with what is wrong with its names, scope and versions.
fn check_crd_spec(crd: &Value) -> Vec<FieldError> {
    let s = |p: &str| {
        crd.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let (group, plural, kind, name) = (
        s("/spec/group"),
        s("/spec/names/plural"),
        s("/spec/names/kind"),
        s("/metadata/name"),
    );
    let required = |path: &str, detail: &str| FieldError {
        path: path.into(),
        kind: crate::schema::ErrorKind::Required,
        value: None,
        detail: detail.into(),
    };
    let mut errors = Vec::new();
    if group.is_empty() || !group.contains('.') {
        errors.push(field_error(
            "spec.group",
            "should be a domain with at least one dot",
        ));
    } else if builtins().iter().any(|b| b.group == group) {
        errors.push(field_error("spec.group", "is a built-in group"));
    }
    errors.extend(check_name(&plural, NameRule::Label, "spec.names.plural"));
    if kind.is_empty() {
        errors.push(required("spec.names.kind", ""));
    }
    if name != format!("{plural}.{group}") {
        errors.push(field_error(
            "metadata.name",
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    let scope = s("/spec/scope");
    if scope != "Namespaced" && scope != "Cluster" {
        errors.push(FieldError {
            path: "spec.scope".into(),
            kind: crate::schema::ErrorKind::NotSupported,
            value: Some(format!("{scope:?}")),
            detail: "supported values: \"Cluster\", \"Namespaced\"".into(),
        });
    }
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let storage = versions
        .iter()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .count();
    if versions.is_empty() {
        errors.push(required(
            "spec.versions",
            "must have exactly one version marked as storage version",
        ));
    } else if storage != 1 {
        errors.push(field_error(
            "spec.versions",
            "must have exactly one version marked as storage version",
        ));
    }
    errors
}

/// The kind one served version of a CRD defines.
fn version_type(crd: &Value, v: &Value, validator: ResourceValidator) -> ResourceType {
    let s = |p: &str| {
        crd.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let kind = s("/spec/names/kind");
    ResourceType {
        group: s("/spec/group"),
        version: v
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        plural: s("/spec/names/plural"),
        singular: crd
            .pointer("/spec/names/singular")
            .and_then(Value::as_str)
            .map_or_else(|| kind.to_lowercase(), str::to_owned),
        kind,
        namespaced: s("/spec/scope") == "Namespaced",
        short_names: strings(crd.pointer("/spec/names/shortNames")),
        categories: strings(crd.pointer("/spec/names/categories")),
        status_subresource: v.pointer("/subresources/status").is_some(),
        generation: true,
        review: false,
        scale: v.pointer("/subresources/scale").and_then(ScalePaths::of),
        terminating: false,
        storage_version: crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .and_then(|vs| {
                vs.iter()
                    .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
            })
            .and_then(|v| v.get("name"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        selectable_fields: v
            .get("selectableFields")
            .and_then(Value::as_array)
            .map(|fields| {
                fields
                    .iter()
                    .filter_map(|f| f.get("jsonPath").and_then(Value::as_str))
                    .map(|p| p.trim_start_matches('.').to_owned())
                    .collect()
            })
            .unwrap_or_default(),
        validator: Some(Arc::new(validator)),
        printer_columns: v
            .get("additionalPrinterColumns")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
    }
}

/// Validates a CRD and derives the kinds it serves.
fn crd_types(crd: &Value) -> Result<Vec<ResourceType>, Vec<FieldError>> {
    let mut errors = check_crd_spec(crd);
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let mut types = Vec::new();
    for (i, v) in versions.iter().enumerate() {
        if v.get("served").and_then(Value::as_bool) != Some(true) {
            continue;
        }
        let version = v.get("name").and_then(Value::as_str).unwrap_or_default();
        if let Some(scale) = v.pointer("/subresources/scale") {
            let path = |field: &str| scale.get(field).and_then(Value::as_str).unwrap_or_default();
            for (field, under, required) in [
                ("specReplicasPath", ".spec.", true),
                ("statusReplicasPath", ".status.", true),
                ("labelSelectorPath", ".", false),
            ] {
                let p = path(field);
                if (p.is_empty() && required) || (!p.is_empty() && (!p.starts_with(under) || p.contains('[')))
                {
                    errors.push(field_error(
                        &format!("spec.versions[{i}].subresources.scale.{field}"),
                        &format!("{p:?}: should be a json path under {under} without array indexes"),
                    ));
                }
            }
        }
        match ResourceValidator::for_crd_version(crd, version) {
            Ok(validator) => types.push(version_type(crd, v, validator)),
            Err(e) => errors.push(field_error(
                &format!("spec.versions[{i}].schema.openAPIV3Schema"),
                &e.to_string(),
            )),
        }
    }
    if errors.is_empty() { Ok(types) } else { Err(errors) }
}

/// The status an accepted CRD gets: its names accepted and itself established.
pub fn established_status(crd: &Value, now: &str) -> Value {
    let condition = |t: &str, reason: &str, message: &str| json!({"type": t, "status": "True", "reason": reason, "message": message, "lastTransitionTime": now});
    let stored: Vec<Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|v| {
            v.iter()
                .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                .filter_map(|v| v.get("name").cloned())
                .collect()
        })
        .unwrap_or_default();
    json!({
        "acceptedNames": crd.pointer("/spec/names").cloned().unwrap_or(Value::Null),
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "storedVersions": stored,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ringrift_crd(kind: &str) -> Value {
        let crd = ringrift_crds::all()
            .into_iter()
            .find(|c| c.spec.names.kind == kind)
            .unwrap();
        serde_json::to_value(crd).unwrap()
    }

    #[test]
    fn builtins_are_served() {
        let r = Registry::default();
        let lease = r.get("coordination.k8s.io", "v1", "leases").unwrap();
        assert!(lease.namespaced);
        assert_eq!(lease.kind, "Lease");
        assert_eq!(
            r.get("", "v1", "namespaces").unwrap().name_rule(),
            NameRule::Label
        );
        assert!(r.get("ringrift.ai", "v1alpha1", "tasks").is_none());
    }

    #[test]
    fn registering_a_crd_serves_its_kind_with_schema_and_columns() {
        let mut r = Registry::default();
        let types = r.register_crd(&ringrift_crd("Task")).unwrap();
        assert_eq!(types.len(), 1);
        let task = r.get("ringrift.ai", "v1alpha1", "tasks").unwrap();
        assert_eq!(task.kind, "Task");
        assert!(task.namespaced && task.status_subresource && task.validator.is_some());
        assert_eq!(task.short_names, ["rtask"]);
        assert_eq!(task.categories, ["ringrift"]);
        assert_eq!(task.selectable_fields, ["spec.agent"]);
        assert!(!task.printer_columns.is_empty());
        assert!(r.groups().contains_key("ringrift.ai"));
        r.unregister_crd(&ringrift_crd("Task"));
        assert!(r.get("ringrift.ai", "v1alpha1", "tasks").is_none());
        assert!(!r.groups().contains_key("ringrift.ai"));
    }

    #[test]
    fn bad_crds_are_refused_with_every_reason() {
        let mut crd = ringrift_crd("Agent");
        crd["metadata"]["name"] = "wrong".into();
        crd["spec"]["scope"] = "Galaxy".into();
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["x"] =
            json!({});
        let errors = Registry::default().register_crd(&crd).unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "metadata.name",
                "spec.scope",
                "spec.versions[0].schema.openAPIV3Schema"
            ],
            "{errors:?}"
        );
        let mut builtin_group = ringrift_crd("Agent");
        builtin_group["spec"]["group"] = "apps".into();
        assert!(Registry::default().register_crd(&builtin_group).is_err());
    }

    #[test]
    fn established_status_accepts_names() {
        let status = established_status(&ringrift_crd("Model"), "2026-11-24T10:00:00Z");
        assert_eq!(status["conditions"][1]["type"], "Established");
        assert_eq!(status["conditions"][1]["status"], "True");
        assert_eq!(status["acceptedNames"]["kind"], "Model");
        assert_eq!(status["storedVersions"], json!(["v1alpha1"]));
    }
}
