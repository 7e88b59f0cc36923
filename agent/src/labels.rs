//! What every metric family of the agent shares: the `result` label set and registration. The
//! agent's own metrics and the sync metrics both build on it.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::registry::Registry;

/// A result label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `ok` or an error category.
    pub result: String,
}

/// Registers `metric` and hands it back.
pub(crate) fn add<M: prometheus_client::registry::Metric + Clone>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    metric: M,
) -> M {
    registry.register(name, help, metric.clone());
    metric
}
