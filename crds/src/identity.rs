//! Who the components are to the API server, and the names that tie an agent to its objects:
//! the contract between the agents (who use the names), the API server (whose node restriction
//! enforces them), and whoever issues agents their credentials (`ringrift up`, `ringrift join`).
//!
//! As kubelets are `system:node:<name>` in the group `system:nodes`, an agent with its own
//! credential is the user `ringrift:agent:<name>` in the group `ringrift:agents`; it may write
//! only its own `Agent`, its own heartbeat Lease ([`heartbeat_lease`]) and the status of the
//! Tasks bound to it.

/// The group of every agent credential.
pub const AGENTS_GROUP: &str = "ringrift:agents";
/// The prefix of an agent's user name; the rest is the agent's name.
pub const AGENT_USER_PREFIX: &str = "ringrift:agent:";
/// The group of every controller credential.
pub const CONTROLLERS_GROUP: &str = "ringrift:controllers";

/// The user name of the agent `agent`.
pub fn agent_user(agent: &str) -> String {
    format!("{AGENT_USER_PREFIX}{agent}")
}

/// The agent a user is, if it is one: a name `ringrift:agent:<name>` in the group
/// `ringrift:agents` (both, as Kubernetes' node restriction asks of kubelets).
pub fn agent_of<'a>(user: &'a str, groups: &[String]) -> Option<&'a str> {
    let name = user.strip_prefix(AGENT_USER_PREFIX)?;
    (!name.is_empty() && groups.iter().any(|g| g == AGENTS_GROUP)).then_some(name)
}

/// The user name of a controller replica.
pub fn controller_user(identity: &str) -> String {
    format!("ringrift:controller:{identity}")
}

/// What the name of every agent's heartbeat Lease starts with.
pub const HEARTBEAT_LEASE_PREFIX: &str = "agent-";

/// The label on an `Agent` naming its failure domain (its `--zone`): copies of an output go to
/// agents in other zones first.
pub const ZONE_LABEL: &str = "ringrift.ai/zone";

/// Whether `value` is a valid label value (and so a zone): at most 63 characters, letters,
/// digits, `-`, `_` and `.`, starting and ending with a letter or digit.
pub fn valid_zone(value: &str) -> bool {
    let bytes = value.as_bytes();
    let edge = |b: Option<&u8>| b.is_some_and(u8::is_ascii_alphanumeric);
    !value.is_empty()
        && value.len() <= 63
        && edge(bytes.first())
        && edge(bytes.last())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The name of an agent's heartbeat Lease.
pub fn heartbeat_lease(agent: &str) -> String {
    format!("{HEARTBEAT_LEASE_PREFIX}{agent}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn zones_are_label_values() {
        for ok in ["eu-west-1a", "rack_3", "a", "dc1.row2"] {
            assert!(super::valid_zone(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "a b", "a/b", &"x".repeat(64)] {
            assert!(!super::valid_zone(bad), "{bad}");
        }
    }
    use super::*;

    #[test]
    fn agents_are_named_and_grouped() {
        let groups = vec![AGENTS_GROUP.to_owned()];
        assert_eq!(agent_of(&agent_user("gpu-1"), &groups), Some("gpu-1"));
        assert_eq!(
            agent_of("ringrift:agent:gpu-1", &[]),
            None,
            "the group is needed too"
        );
        assert_eq!(agent_of("ringrift:agent:", &groups), None);
        assert_eq!(agent_of("alice", &groups), None);
        assert_eq!(heartbeat_lease("gpu-1"), "agent-gpu-1");
        assert_eq!(controller_user("c-1"), "ringrift:controller:c-1");
    }
}
