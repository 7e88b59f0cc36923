//! The node restriction, as Kubernetes' NodeRestriction admission plugin applies it to kubelets:
//! an agent's own credential (user `ringrift:agent:<name>` in the group `ringrift:agents`, see
//! [`ringrift_crds::identity`]) may write only its own `Agent`, its own heartbeat Lease and the
//! status of the Tasks bound to it, whatever RBAC grants the group. Reads are RBAC's alone.
//! Pure: the caller supplies the object the request names (its body, or the stored Task).

use ringrift_crds::identity::{agent_of, heartbeat_lease};
use serde_json::Value;

use super::User;
use super::rbac::Attributes;

/// The resources the restriction guards, as (API group, plural).
const AGENTS: (&str, &str) = ("ringrift.ai", "agents");
const LEASES: (&str, &str) = ("coordination.k8s.io", "leases");
const TASKS: (&str, &str) = ("ringrift.ai", "tasks");

/// What the restriction needs to know of the request beyond its attributes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Subject<'a> {
    /// The name in the body of a create (the path names none).
    pub created_name: Option<&'a str>,
    /// The stored object a write names (a Task's binding).
    pub stored: Option<&'a Value>,
}

/// Why an agent's write is refused, if it is: the message of the 403.
pub fn refusal(user: &User, attributes: &Attributes, subject: Subject<'_>) -> Option<String> {
    let agent = agent_of(&user.name, &user.groups)?;
    if matches!(attributes.verb.as_str(), "get" | "list" | "watch") {
        return None;
    }
    let resource = (attributes.group.as_str(), attributes.resource.as_str());
    let name = attributes.name.as_deref().or(subject.created_name);
    let refuse = |what: String| {
        Some(format!(
            "agent {agent:?} may not {} {what}: an agent may change only its own Agent, its heartbeat Lease {:?} and the status of Tasks bound to it (node restriction)",
            attributes.verb,
            heartbeat_lease(agent)
        ))
    };
    if attributes.verb == "deletecollection" && [AGENTS, LEASES, TASKS].contains(&resource) {
        return refuse(format!("every {}", attributes.resource));
    }
    if resource == AGENTS {
        return match name {
            Some(n) if n == agent => None,
            Some(n) => refuse(format!("Agent {n:?}")),
            None => refuse("an Agent without a name".into()),
        };
    }
    if resource == LEASES {
        return match name {
            Some(n) if n == heartbeat_lease(agent) => None,
            Some(n) => refuse(format!("Lease {n:?}")),
            None => refuse("a Lease without a name".into()),
        };
    }
    if resource == TASKS {
        let task = name.unwrap_or_default();
        if attributes.subresource.as_deref() != Some("status") {
            return refuse(format!("Task {task:?} (only its status)"));
        }
        let bound = subject
            .stored
            .and_then(|t| t.pointer("/spec/agent"))
            .and_then(Value::as_str);
        return match bound {
            Some(b) if b == agent => None,
            Some(b) => refuse(format!(
                "the status of Task {task:?}, which is bound to agent {b:?}"
            )),
            None => refuse(format!("the status of Task {task:?}, which is bound to no agent")),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn agent(name: &str) -> User {
        User {
            name: format!("ringrift:agent:{name}"),
            groups: vec!["ringrift:agents".into(), "system:authenticated".into()],
        }
    }

    fn attrs(verb: &str, group: &str, resource: &str, sub: Option<&str>, name: Option<&str>) -> Attributes {
        Attributes {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: sub.map(str::to_owned),
            namespace: None,
            name: name.map(str::to_owned),
        }
    }

    #[test]
    fn an_agent_changes_its_own_agent_and_lease_only() {
        let a = agent("a");
        let none = Subject::default();
        assert_eq!(
            refusal(
                &a,
                &attrs("patch", "ringrift.ai", "agents", Some("status"), Some("a")),
                none
            ),
            None
        );
        let e = refusal(
            &a,
            &attrs("patch", "ringrift.ai", "agents", Some("status"), Some("b")),
            none,
        )
        .unwrap();
        assert!(e.contains(r#"agent "a" may not patch Agent "b""#), "{e}");
        assert!(e.contains("node restriction"), "{e}");
        let create = Subject {
            created_name: Some("b"),
            stored: None,
        };
        assert!(refusal(&a, &attrs("create", "ringrift.ai", "agents", None, None), create).is_some());
        let own = Subject {
            created_name: Some("a"),
            stored: None,
        };
        assert_eq!(
            refusal(&a, &attrs("create", "ringrift.ai", "agents", None, None), own),
            None
        );
        assert_eq!(
            refusal(
                &a,
                &attrs("patch", "coordination.k8s.io", "leases", None, Some("agent-a")),
                none
            ),
            None
        );
        let e = refusal(
            &a,
            &attrs(
                "update",
                "coordination.k8s.io",
                "leases",
                None,
                Some("ringrift-controller"),
            ),
            none,
        )
        .unwrap();
        assert!(e.contains(r#"Lease "ringrift-controller""#), "{e}");
        assert!(
            refusal(
                &a,
                &attrs("deletecollection", "coordination.k8s.io", "leases", None, None),
                none
            )
            .is_some()
        );
    }

    #[test]
    fn an_agent_writes_the_status_of_its_own_tasks_only() {
        let a = agent("a");
        let mine = json!({"spec": {"agent": "a"}});
        let theirs = json!({"spec": {"agent": "b"}});
        let status = attrs("update", "ringrift.ai", "tasks", Some("status"), Some("t1"));
        let with = |stored| Subject {
            created_name: None,
            stored: Some(stored),
        };
        assert_eq!(refusal(&a, &status, with(&mine)), None);
        let e = refusal(&a, &status, with(&theirs)).unwrap();
        assert!(e.contains(r#"bound to agent "b""#), "{e}");
        assert!(
            refusal(&a, &status, Subject::default()).is_some(),
            "an unknown task is refused"
        );
        let e = refusal(
            &a,
            &attrs("patch", "ringrift.ai", "tasks", None, Some("t1")),
            with(&mine),
        )
        .unwrap();
        assert!(e.contains("only its status"), "{e}");
    }

    #[test]
    fn reads_others_and_other_kinds_are_left_to_rbac() {
        let a = agent("a");
        let none = Subject::default();
        assert_eq!(
            refusal(&a, &attrs("list", "ringrift.ai", "agents", None, None), none),
            None
        );
        assert_eq!(
            refusal(&a, &attrs("get", "ringrift.ai", "tasks", None, Some("t")), none),
            None
        );
        assert_eq!(
            refusal(&a, &attrs("create", "", "events", None, None), none),
            None
        );
        let controller = User {
            name: "ringrift:controller:c1".into(),
            groups: vec!["ringrift:controllers".into()],
        };
        assert_eq!(
            refusal(
                &controller,
                &attrs("patch", "ringrift.ai", "agents", Some("status"), Some("b")),
                none
            ),
            None
        );
        // The name alone does not make an agent: the group is needed too (as for kubelets).
        let pretender = User {
            name: "ringrift:agent:a".into(),
            groups: vec![],
        };
        assert_eq!(
            refusal(
                &pretender,
                &attrs("patch", "ringrift.ai", "agents", None, Some("b")),
                none
            ),
            None
        );
    }
}
