//! Rendering the CRDs to the YAML files committed in the Helm chart.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

/// Where the generated CRD files live, relative to the repository root.
pub const CHART_CRD_DIR: &str = "charts/ringrift/files/crds";

/// The command that regenerates the committed files, for messages and file headers.
pub const REGENERATE_COMMAND: &str = "cargo run -p ringrift -- crds --output-dir charts/ringrift/files/crds";

/// Failure to render a CRD.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The CRD could not be serialized.
    #[error("failed to serialize CRD {name} to YAML")]
    Serialize {
        /// The CRD's name.
        name: String,
        /// The serializer's error.
        #[source]
        source: serde_saphyr::ser::Error,
    },
}

/// One rendered CRD file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedCrd {
    /// File name, `<plural>.<group>.yaml`.
    pub file_name: String,
    /// File content: a header comment and the CRD as YAML.
    pub content: String,
}

/// Renders one CRD as a YAML document, without header.
///
/// # Errors
/// When the CRD cannot be serialized.
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, RenderError> {
    serde_saphyr::to_string(crd).map_err(|source| RenderError::Serialize {
        name: crd.metadata.name.clone().unwrap_or_default(),
        source,
    })
}

/// Renders every CRD of [`crate::all`] to its committed file.
///
/// # Errors
/// When a CRD cannot be serialized.
pub fn render_all() -> Result<Vec<RenderedCrd>, RenderError> {
    crate::all()
        .iter()
        .map(|crd| {
            let name = crd.metadata.name.clone().unwrap_or_default();
            let content = format!(
                "# Generated from the types in crds/ by `ringrift crds`. Do not edit by hand.\n\
                 # Regenerate with: {REGENERATE_COMMAND}\n{}",
                to_yaml(crd)?
            );
            Ok(RenderedCrd {
                file_name: format!("{name}.yaml"),
                content,
            })
        })
        .collect()
}

/// Renders every CRD as one multi-document YAML stream (what `ringrift crds` prints).
///
/// # Errors
/// When a CRD cannot be serialized.
pub fn render_stream() -> Result<String, RenderError> {
    let mut stream = String::new();
    for crd in crate::all() {
        stream.push_str("---\n");
        stream.push_str(&to_yaml(&crd)?);
    }
    Ok(stream)
}
