//! The Helm chart and the image, checked with the real tools: `helm lint --strict`, renders with
//! the default and non-default values that pass `kubernetes-validate --strict`, a values schema
//! that refuses wrong values with a message naming them, and a Dockerfile that passes hadolint.
//! (`chart_install.rs` applies the chart and runs what it starts.)

// Test code: a failed unwrap or a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use ringrift_e2e::chart::{NAMESPACE, container, helm, object, objects, template};
use ringrift_e2e::{repo_root, run, tool};
use serde_json::Value;

/// Value combinations besides the defaults, each a set of `--set`/`--set-json` arguments.
const COMBINATIONS: &[(&str, &[&str])] = &[
    (
        "monitoring, network policies, hard anti-affinity, three replicas",
        &[
            "--set",
            "metrics.serviceMonitor.enabled=true",
            "--set",
            "networkPolicy.enabled=true",
            "--set-json",
            r#"networkPolicy.metricsFrom=[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}}]"#,
            "--set",
            "controller.podAntiAffinity=hard",
            "--set",
            "controller.replicas=3",
            "--set",
            "logging.format=plain",
        ],
    ),
    (
        "GPUs from the device plugin, nvidia runtime class, host network, JSON-set numbers",
        &[
            "--set",
            "agent.gpu.count=8",
            "--set",
            "agent.gpu.runtimeClassName=nvidia",
            "--set",
            "agent.hostNetwork=true",
            "--set-json",
            "agent.resources={\"requests\":{\"cpu\":\"2\",\"memory\":\"8Gi\"}}",
            "--set-json",
            "agent.diskHighWater=0.9",
            "--set",
            "agent.drainOnShutdown=true",
            "--set",
            "agent.simulateGpus=4xH100-80GB",
            "--set",
            "image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ],
    ),
    (
        "an existing Secret, no CRDs, no RBAC, one controller, no agents' chown",
        &[
            "--set",
            "secret.existingSecret=my-ringrift",
            "--set",
            "crds.install=false",
            "--set",
            "rbac.create=false",
            "--set",
            "controller.replicas=1",
            "--set",
            "agent.chownDataDir=false",
            "--set",
            "controller.serviceAccount.create=false",
        ],
    ),
    ("controller only", &["--set", "agent.enabled=false"]),
    (
        "the web dashboard with its own certificate, behind network policies",
        &[
            "--set",
            "controller.dashboard.enabled=true",
            "--set",
            "controller.dashboard.tls.secretName=ringrift-dashboard-tls",
            "--set",
            "networkPolicy.enabled=true",
        ],
    ),
    (
        "the agents' node restriction policy on Kubernetes 1.33, the admin port's certificate from a Secret",
        &[
            "--kube-version",
            "1.33.0",
            "--set",
            "agent.nodeRestrictionPolicy.enabled=true",
            "--set",
            "controller.tls.secretName=ringrift-admin-tls",
            "--set",
            "metrics.serviceMonitor.enabled=true",
            "--set-json",
            r#"metrics.serviceMonitor.tlsConfig={"serverName":"ringrift-controller","ca":{"secret":{"name":"ringrift-admin-tls","key":"ca.crt"}}}"#,
        ],
    ),
];

/// A container's arguments.
fn arguments(container: &Value) -> Vec<&str> {
    container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect()
}

fn validate(manifests: &str, what: &str) {
    let path = std::env::temp_dir().join(format!(
        "ringrift-chart-{}-{}.yaml",
        std::process::id(),
        what.len()
    ));
    std::fs::write(&path, manifests).unwrap();
    let validate = tool("kubernetes-validate").unwrap();
    for version in ["1.33.0", "1.37.0"] {
        let out = run(Command::new(&validate)
            .args(["--strict", "-k", version])
            .arg(&path))
        .unwrap();
        let text = format!("{}{}", out.stdout, out.stderr);
        assert!(
            out.success,
            "{what}: kubernetes-validate -k {version} failed:\n{text}"
        );
        // ServiceMonitor (a prometheus-operator CRD) has no schema in the tool: checked by hand
        // below. Anything else it could not check is a failure.
        let unchecked: Vec<&str> = text
            .lines()
            .filter(|l| !l.contains(" passed for resource ") && !l.trim().is_empty())
            .filter(|l| !l.contains("Couldn't find schema for kind ServiceMonitor"))
            .collect();
        assert!(unchecked.is_empty(), "{what} ({version}): {unchecked:#?}");
        let passed = text.matches(" passed for resource ").count();
        let kinds = objects(manifests)
            .iter()
            .filter(|o| o["kind"] != "ServiceMonitor")
            .count();
        assert_eq!(passed, kinds, "{what} ({version}): every object validated");
    }
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn helm_lint_strict_passes_with_the_defaults_and_every_combination() {
    let chart = repo_root().join("charts/ringrift");
    let out = helm(&["lint", "--strict", chart.to_str().unwrap()]);
    assert!(out.success, "helm lint --strict:\n{}{}", out.stdout, out.stderr);
    for (what, sets) in COMBINATIONS {
        let mut args = vec!["lint", "--strict", chart.to_str().unwrap()];
        args.extend_from_slice(sets);
        let out = helm(&args);
        assert!(
            out.success,
            "helm lint --strict ({what}):\n{}{}",
            out.stdout, out.stderr
        );
    }
}

#[test]
fn the_default_render_passes_kubernetes_validate_strict() {
    let manifests = template(&[]).unwrap();
    validate(&manifests, "defaults");
    let objs = objects(&manifests);
    let kinds: Vec<&str> = objs.iter().map(|o| o["kind"].as_str().unwrap()).collect();
    for kind in [
        "Deployment",
        "DaemonSet",
        "PodDisruptionBudget",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Secret",
        "Service",
        "CustomResourceDefinition",
    ] {
        assert!(kinds.contains(&kind), "the defaults render a {kind}: {kinds:?}");
    }
    for kind in ["ServiceMonitor", "NetworkPolicy"] {
        assert!(!kinds.contains(&kind), "{kind} is off by default");
    }
}

#[test]
fn every_combination_renders_and_passes_kubernetes_validate_strict() {
    for (what, sets) in COMBINATIONS {
        let manifests = template(sets).unwrap_or_else(|e| panic!("{what}: {e}"));
        validate(&manifests, what);
    }
}

#[test]
fn the_controller_runs_restricted_with_two_spread_replicas_a_budget_and_admin_probes() {
    let objs = objects(&template(&[]).unwrap());
    let deployment = object(&objs, "Deployment", "controller");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    let c = container(deployment);
    assert_eq!(c["args"][0], "controller");
    let sc = &c["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let spread = &pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0];
    assert_eq!(spread["podAffinityTerm"]["topologyKey"], "kubernetes.io/hostname");
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        assert_eq!(c[probe]["httpGet"]["port"], "admin", "{probe} on the admin port");
        assert_eq!(c[probe]["httpGet"]["scheme"], "HTTPS", "{probe} over TLS");
    }
    // /metrics asks for the metrics token: only that key of the Secret is mounted, readable
    // by the controller's group.
    let args = arguments(c);
    assert!(
        args.contains(&"--metrics-token-file=/etc/ringrift/metrics/metrics-token"),
        "{args:?}"
    );
    for flag in [
        "--breaker-failures=3",
        "--breaker-window=10m",
        "--breaker-quarantine=5m",
        "--max-concurrent-trainings=0",
        "--hand-over=2s",
    ] {
        assert!(args.contains(&flag), "{flag}: {args:?}");
    }
    let off = objects(&template(&["--set", "controller.breaker.failures=0"]).unwrap());
    assert!(arguments(container(object(&off, "Deployment", "controller"))).contains(&"--breaker-failures=0"));
    assert!(!args.contains(&"--kueue"), "Kueue is off by default");
    let kueue = objects(&template(&["--set", "controller.kueue.enabled=true"]).unwrap());
    assert!(arguments(container(object(&kueue, "Deployment", "controller"))).contains(&"--kueue"));
    let two = objects(&template(&["--set", "controller.maxConcurrentTrainings=2"]).unwrap());
    assert!(
        arguments(container(object(&two, "Deployment", "controller")))
            .contains(&"--max-concurrent-trainings=2")
    );
    assert!(
        template(&["--set", "controller.maxConcurrentTrainings=-1"]).is_err(),
        "the schema refuses a negative limit"
    );
    let off = objects(&template(&["--set", "controller.handOver=0s"]).unwrap());
    assert!(arguments(container(object(&off, "Deployment", "controller"))).contains(&"--hand-over=0s"));
    assert!(
        template(&["--set", "controller.handOver=soon"]).is_err(),
        "the schema refuses a hand-over window that is no duration"
    );
    let volume = &pod["volumes"][0]["secret"];
    assert_eq!(
        volume["items"],
        serde_json::json!([{"key": "metrics-token", "path": "metrics-token"}])
    );
    assert_eq!(pod["securityContext"]["fsGroup"], 65532);
    // The admin port's certificate from a Secret, when one is named.
    let with_tls = objects(&template(&["--set", "controller.tls.secretName=admin-tls"]).unwrap());
    let c = container(object(&with_tls, "Deployment", "controller"));
    let args = arguments(c);
    assert!(
        args.contains(&"--admin-tls-cert-file=/etc/ringrift/admin-tls/tls.crt"),
        "{args:?}"
    );
    assert_eq!(c["ports"][0]["name"], "admin");
    let pdb = object(&objs, "PodDisruptionBudget", "controller");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(pdb["spec"]["selector"], deployment["spec"]["selector"]);
    // One replica: no budget (it would block every node drain).
    let single = objects(&template(&["--set", "controller.replicas=1"]).unwrap());
    assert!(!single.iter().any(|o| o["kind"] == "PodDisruptionBudget"));
}

#[test]
fn the_agent_runs_on_gpu_nodes_with_its_node_name_data_dir_and_no_privileges() {
    let objs = objects(&template(&[]).unwrap());
    let ds = object(&objs, "DaemonSet", "agent");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["nodeSelector"]["nvidia.com/gpu.present"], "true");
    assert_eq!(pod["tolerations"][0]["key"], "nvidia.com/gpu");
    let c = container(ds);
    let env: Vec<&Value> = c["env"].as_array().unwrap().iter().collect();
    let node = env.iter().find(|e| e["name"] == "NODE_NAME").unwrap();
    assert_eq!(node["valueFrom"]["fieldRef"]["fieldPath"], "spec.nodeName");
    assert!(
        env.iter()
            .any(|e| e["name"] == "NVIDIA_VISIBLE_DEVICES" && e["value"] == "all")
    );
    let args = arguments(c);
    assert!(args.contains(&"--name=$(NODE_NAME)"), "{args:?}");
    assert!(
        args.contains(&"--advertise=https://$(POD_IP):8770"),
        "TLS endpoint: {args:?}"
    );
    assert!(
        args.contains(&"--metrics-token-file=/etc/ringrift/secret/metrics-token"),
        "{args:?}"
    );
    assert!(
        args.contains(&"--zone-node-label=topology.kubernetes.io/zone")
            && !args.iter().any(|a| a.starts_with("--zone=")),
        "the zone from the node's topology label unless set: {args:?}"
    );
    let data = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "data")
        .unwrap();
    assert_eq!(data["hostPath"]["path"], "/var/lib/ringrift");
    let sc = &c["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert!(sc.get("privileged").is_none_or(|p| p == false));
    // The init container is root with CHOWN only.
    let init = &pod["initContainers"][0];
    assert_eq!(
        init["securityContext"]["capabilities"]["add"],
        serde_json::json!(["CHOWN"])
    );
    assert_eq!(init["securityContext"]["allowPrivilegeEscalation"], false);
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(c[probe]["httpGet"]["path"], path);
        assert_eq!(c[probe]["httpGet"]["port"], "rest");
        assert_eq!(c[probe]["httpGet"]["scheme"], "HTTPS");
    }
    // GPUs from a device plugin, when asked.
    let objs = objects(
        &template(&[
            "--set",
            "agent.gpu.count=4",
            "--set",
            "agent.gpu.runtimeClassName=nvidia",
        ])
        .unwrap(),
    );
    let ds = object(&objs, "DaemonSet", "agent");
    assert_eq!(container(ds)["resources"]["limits"]["nvidia.com/gpu"], 4);
    assert_eq!(ds["spec"]["template"]["spec"]["runtimeClassName"], "nvidia");
    // A zone, when set; one that is not a label value is refused by the values schema.
    let objs = objects(&template(&["--set", "agent.zone=eu-west-1a"]).unwrap());
    let args = arguments(container(object(&objs, "DaemonSet", "agent")));
    assert!(args.contains(&"--zone=eu-west-1a"), "{args:?}");
    assert!(
        !args.iter().any(|a| a.starts_with("--zone-node-label")),
        "{args:?}"
    );
    let refused = template(&["--set", "agent.zone=not a zone"]).unwrap_err();
    assert!(refused.contains("zone"), "{refused}");
    // Reading the node is granted only while the zone comes from it.
    let reads_nodes = |objs: &[serde_json::Value]| {
        object(objs, "ClusterRole", "agent")["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["resources"] == serde_json::json!(["nodes"]))
    };
    assert!(!reads_nodes(&objs), "a set zone reads no node");
    let objs = objects(&template(&["--set", "agent.zoneNodeLabel="]).unwrap());
    assert!(!reads_nodes(&objs));
    let args = arguments(container(object(&objs, "DaemonSet", "agent")));
    assert!(
        !args.iter().any(|a| a.starts_with("--zone")),
        "no zone at all: {args:?}"
    );
    assert!(reads_nodes(&objects(&template(&[]).unwrap())));
    let refused = template(&["--set", "agent.zoneNodeLabel=not a label"]).unwrap_err();
    assert!(refused.contains("zoneNodeLabel"), "{refused}");
}

#[test]
fn the_dashboard_is_served_over_tls_with_its_token_only_when_enabled() {
    let off = objects(&template(&[]).unwrap());
    let args = arguments(container(object(&off, "Deployment", "controller")));
    assert!(!args.iter().any(|a| a.starts_with("--dashboard")), "{args:?}");
    // Without a certificate the chart refuses, naming the values.
    refused(
        &["--set", "controller.dashboard.enabled=true"],
        &["controller.dashboard.tls.secretName", "TLS only"],
    );
    // The admin port's certificate serves when the dashboard names none.
    let on = objects(
        &template(&[
            "--set",
            "controller.dashboard.enabled=true",
            "--set",
            "controller.tls.secretName=admin-tls",
        ])
        .unwrap(),
    );
    let deployment = object(&on, "Deployment", "controller");
    let c = container(deployment);
    let args = arguments(c);
    for expected in [
        "--dashboard-listen=0.0.0.0:8443",
        "--dashboard-token-file=/etc/ringrift/dashboard/dashboard-token",
        "--dashboard-tls-cert-file=/etc/ringrift/dashboard-tls/tls.crt",
        "--dashboard-tls-key-file=/etc/ringrift/dashboard-tls/tls.key",
        "--agent-token-file=/etc/ringrift/dashboard/agent-token",
    ] {
        assert!(args.contains(&expected), "{expected} in {args:?}");
    }
    assert!(!args.contains(&"--dashboard-plain-http"));
    let volumes = deployment["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap();
    let tls = volumes.iter().find(|v| v["name"] == "dashboard-tls").unwrap();
    assert_eq!(tls["secret"]["secretName"], "admin-tls");
    let tokens = volumes.iter().find(|v| v["name"] == "dashboard").unwrap();
    let keys: Vec<&str> = tokens["secret"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["dashboard-token", "agent-token"]);
    assert!(
        c["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "dashboard")
    );
    let service = object(&on, "Service", "controller");
    assert!(
        service["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "dashboard" && p["port"] == 8443)
    );
}

#[test]
fn the_secret_is_generated_or_taken_from_an_existing_one() {
    let objs = objects(&template(&[]).unwrap());
    let secret = object(&objs, "Secret", "agent");
    for key in ["agent-token", "cluster-key", "metrics-token", "dashboard-token"] {
        assert!(
            secret["data"][key].as_str().unwrap().len() >= 44,
            "{key} is long enough"
        );
    }
    let volume = |objs: &[Value]| {
        object(objs, "DaemonSet", "agent")["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "secret")
            .unwrap()["secret"]["secretName"]
            .clone()
    };
    assert_eq!(volume(&objs), secret["metadata"]["name"]);
    let existing = objects(&template(&["--set", "secret.existingSecret=mine"]).unwrap());
    assert!(!existing.iter().any(|o| o["kind"] == "Secret"));
    assert_eq!(volume(&existing), "mine");
    // The controller's metrics token needs the Secret without agents too.
    let controller_only = objects(&template(&["--set", "agent.enabled=false"]).unwrap());
    assert!(controller_only.iter().any(|o| o["kind"] == "Secret"));
}

#[test]
fn service_monitors_select_the_services_and_their_named_ports() {
    let objs = objects(&template(&["--set", "metrics.serviceMonitor.enabled=true"]).unwrap());
    for component in ["controller", "agent"] {
        let sm = object(&objs, "ServiceMonitor", component);
        let svc = object(&objs, "Service", component);
        assert_eq!(sm["metadata"]["namespace"], NAMESPACE);
        for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
            assert_eq!(
                &svc["metadata"]["labels"][k], v,
                "{component}: the Service has label {k}"
            );
        }
        let port = sm["spec"]["endpoints"][0]["port"].as_str().unwrap();
        assert!(
            svc["spec"]["ports"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == port),
            "{component}: the Service has a port named {port}"
        );
    }
    // Both over HTTPS with the metrics token (never the agents' REST token).
    for component in ["controller", "agent"] {
        let endpoint = &object(&objs, "ServiceMonitor", component)["spec"]["endpoints"][0];
        assert_eq!(endpoint["scheme"], "https", "{component}");
        assert_eq!(endpoint["authorization"]["type"], "Bearer");
        assert_eq!(endpoint["authorization"]["credentials"]["key"], "metrics-token");
        assert_eq!(endpoint["tlsConfig"]["insecureSkipVerify"], true);
    }
}

/// `helm template` with `args` fails, and its message contains every one of `expect`.
fn refused(args: &[&str], expect: &[&str]) {
    let e = template(args).expect_err(&format!("{args:?} must be refused"));
    for part in expect {
        assert!(e.contains(part), "{args:?}: the error names {part:?}:\n{e}");
    }
}

#[test]
fn the_values_schema_refuses_wrong_types_and_unknown_keys_naming_them() {
    refused(
        &["--set", "controller.replicas=two"],
        &["controller.replicas", "Expected: integer, given: string"],
    );
    refused(
        &["--set", "agent.port=99999"],
        &["agent.port", "less than or equal to 65535"],
    );
    refused(
        &["--set", "agent.heartbeat=10"],
        &["agent.heartbeat", "Expected: string, given: integer"],
    );
    refused(
        &["--set", "agent.heartbeat=10 seconds"],
        &["agent.heartbeat", "Does not match pattern"],
    );
    refused(
        &["--set", "logging.format=xml"],
        &["logging.format", "must be one of"],
    );
    refused(
        &["--set", "controller.replica=2"],
        &["controller", "Additional property replica is not allowed"],
    );
    refused(
        &["--set", "agent.enabled=yes"],
        &["agent.enabled", "Expected: boolean, given: string"],
    );
    refused(
        &["--set", "agent.dataDir=relative/path"],
        &["agent.dataDir", "Does not match pattern"],
    );
    refused(
        &["--set-json", "agent.diskLowWater=0.9"],
        &["agent.diskLowWater (0.9) must be below agent.diskHighWater (0.85)"],
    );
    refused(
        &["--set", "controller.podAntiAffinity=maybe"],
        &["controller.podAntiAffinity", "must be one of"],
    );
}

/// Walks values.yaml and its schema together, collecting what one has and the other lacks.
fn walk(value: &Value, schema: &Value, path: &str, problems: &mut Vec<String>) {
    let Some(props) = schema["properties"].as_object() else {
        return;
    };
    let Some(map) = value.as_object() else {
        problems.push(format!("{path}: the schema has properties, the value is {value}"));
        return;
    };
    for (k, v) in map {
        match props.get(k) {
            // Kubernetes' own type: its schema lists fields the defaults leave out.
            Some(_) if k == "resources" => {}
            Some(s) => walk(v, s, &format!("{path}.{k}"), problems),
            None => problems.push(format!("{path}.{k}: no schema")),
        }
    }
    for k in props.keys().filter(|k| !map.contains_key(*k) && *k != "global") {
        problems.push(format!("{path}.{k}: in the schema, not in values.yaml"));
    }
    for (k, s) in props {
        if s.get("description").is_none()
            && s["properties"].is_null()
            && ![
                "resources",
                "nodeSelector",
                "podAnnotations",
                "podLabels",
                "annotations",
                "labels",
                "requests",
                "limits",
                "claims",
            ]
            .contains(&k.as_str())
        {
            problems.push(format!("{path}.{k}: no description"));
        }
    }
}

#[test]
fn every_value_has_a_schema_and_every_schema_entry_a_value() {
    // Walks values.yaml and the schema together: a value without a schema entry (or the reverse)
    // fails, so neither can drift from the other.
    let values: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo_root().join("charts/ringrift/values.yaml")).unwrap(),
    )
    .unwrap();
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("charts/ringrift/values.schema.json")).unwrap(),
    )
    .unwrap();
    let mut problems = Vec::new();
    walk(&values, &schema, "values", &mut problems);
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_dockerfile_passes_hadolint_and_runs_as_non_root() {
    let dockerfile = repo_root().join("Dockerfile");
    let out = run(Command::new(tool("hadolint").unwrap()).arg(&dockerfile)).unwrap();
    assert!(out.success, "hadolint:\n{}{}", out.stdout, out.stderr);
    let text = std::fs::read_to_string(&dockerfile).unwrap();
    assert!(text.matches("\nFROM ").count() >= 2, "multi-stage");
    let user = text.lines().rfind(|l| l.starts_with("USER ")).unwrap();
    assert_eq!(
        user, "USER 65532:65532",
        "the runtime stage runs as the chart's user"
    );
    let objs = objects(&template(&[]).unwrap());
    let ds = object(&objs, "DaemonSet", "agent");
    assert_eq!(
        ds["spec"]["template"]["spec"]["securityContext"]["runAsUser"],
        65532
    );
}
