//! Helpers of the API server conformance tests: kube-rs clients, JSON from kubectl, a test
//! CRD, polling.

// Test harness: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::Value;

use crate::kubectl::ok;
use crate::process::ApiServerProcess;

/// kubectl's JSON output of `args` (`-o json` added).
pub fn ok_json(server: &ApiServerProcess, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&ok(server, &all)).unwrap()
}

/// A kube-rs client with the server's administrator kubeconfig.
pub async fn client(server: &ApiServerProcess) -> Client {
    let kubeconfig = Kubeconfig::read_from(&server.kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

/// A CRD `widgets.example.com` whose `spec` has the CEL rule `rule` (with `extra` fields on it).
pub fn widget_crd(rule: &str, extra: &str) -> String {
    format!(
        r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: widgets.example.com}}
spec:
  group: example.com
  scope: Namespaced
  names: {{plural: widgets, singular: widget, kind: Widget}}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {{type: integer}}
            x-kubernetes-validations:
            - rule: "{rule}"
              message: size is capped{extra}
"#
    )
}

/// Polls `f` until it returns Some, for up to 30 seconds.
pub fn poll_until<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(value) = f() {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "condition not reached in 30 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
