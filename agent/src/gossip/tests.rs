//! Real members on loopback UDP in one process.

use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;

use super::state::AgentState;
use super::{Gossip, GossipConfig, Timing};
use crate::sync::key::ClusterKey;
use crate::sync::metrics::SyncMetrics;

fn key(k: &str) -> ClusterKey {
    ClusterKey::new(k.as_bytes()).unwrap()
}

fn fast() -> Timing {
    Timing {
        probe_period: Duration::from_millis(200),
        probe_rtt: Duration::from_millis(100),
        suspect_to_down: Duration::from_millis(800),
        gossip_interval: Duration::from_millis(100),
        fanout: 3,
        cluster_size: 8,
    }
}

async fn member(name: &str, k: &str, seeds: Vec<std::net::SocketAddr>) -> (Gossip, SyncMetrics) {
    let metrics = SyncMetrics::register(&mut Registry::default());
    let config = GossipConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        advertise: None,
        seeds,
        timing: fast(),
    };
    (
        Gossip::start(name, &config, key(k), metrics.clone())
            .await
            .unwrap(),
        metrics,
    )
}

async fn until(what: &str, deadline: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const KEY: &str = "the cluster key, long enough";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_meet_share_state_and_see_a_killed_member_die() {
    let (first, _) = member("a0", KEY, vec![]).await;
    let mut members = vec![first];
    for i in 1..5 {
        let (m, _) = member(&format!("a{i}"), KEY, vec![members[0].addr()]).await;
        members.push(m);
    }
    until("everyone to see everyone", Duration::from_secs(10), || {
        members.iter().all(|m| m.members().len() == 5)
    })
    .await;

    members[3].set_state(AgentState {
        endpoint: "http://127.0.0.1:1".into(),
        free_gpus: 3,
        ..AgentState::default()
    });
    until("the state to spread", Duration::from_secs(5), || {
        members
            .iter()
            .all(|m| m.state_of("a3").is_some_and(|s| s.free_gpus == 3))
    })
    .await;

    let killed = members.remove(4);
    killed.kill();
    until(
        "the killed member to be declared dead",
        Duration::from_secs(10),
        || members.iter().all(|m| m.dead().contains(&"a4".to_owned())),
    )
    .await;
    assert!(members.iter().all(|m| m.members().len() == 4));
    for m in members {
        m.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_without_the_key_cannot_join_or_inject_state() {
    let (a, metrics_a) = member("a", KEY, vec![]).await;
    let (b, metrics_b) = member("b", KEY, vec![a.addr()]).await;
    until("a and b to meet", Duration::from_secs(10), || {
        a.members().len() == 2
    })
    .await;

    let (outsider, _) = member("outsider", "some other key entirely", vec![a.addr(), b.addr()]).await;
    outsider.set_state(AgentState {
        endpoint: "http://evil:1".into(),
        ..AgentState::default()
    });
    // Not "nothing happened within half a second": both members it asked refused its packets
    // (counted), and still neither took it in.
    until(
        "the outsider's packets to be refused by both members",
        Duration::from_secs(10),
        || metrics_a.gossip_rejected.get() > 0 && metrics_b.gossip_rejected.get() > 0,
    )
    .await;
    for m in [&a, &b] {
        assert!(!m.members().iter().any(|x| x.name == "outsider"));
        assert!(m.state_of("outsider").is_none());
    }
    assert_eq!(outsider.members().len(), 1, "nobody answered it");
}
