//! Gossip between agents: SWIM membership with suspicion through [foca] (it has no I/O of its
//! own; this module gives it a UDP socket and timers), every packet sealed with the cluster key
//! ([`wire`]), and each agent's state disseminated as foca custom broadcasts ([`state`]). See
//! `docs/agent.md` for the choice of library.
//!
//! [`Gossip`] runs one member; the bench runs a hundred in one process.

/// Gossip of a running agent: its own state out, the peer directory in.
pub mod node;
pub mod state;
pub mod wire;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::SocketAddr;
use std::num::{NonZeroU8, NonZeroU32, NonZeroUsize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use foca::{AccumulatingRuntime, Foca, OwnedNotification, PostcardCodec, Timer};
use rand::SeedableRng as _;
use rand::rngs::SmallRng;
use serde::Serialize;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use self::state::{AgentState, Id, States};
use crate::sync::key::ClusterKey;
use crate::sync::metrics::SyncMetrics;

/// Largest gossip payload: room for many states per packet on a LAN.
const MAX_PACKET: usize = 8 * 1024;

/// Failure detection and dissemination timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// One member probed per period.
    pub probe_period: Duration,
    /// Wait for a direct probe's answer before asking others to probe indirectly.
    pub probe_rtt: Duration,
    /// A suspect that does not refute within this is declared down.
    pub suspect_to_down: Duration,
    /// Updates are pushed to `fanout` random members this often.
    pub gossip_interval: Duration,
    /// Members each gossip round is sent to.
    pub fanout: usize,
    /// Expected members (sizes how often an update is retransmitted).
    pub cluster_size: u32,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            probe_period: Duration::from_secs(1),
            probe_rtt: Duration::from_millis(500),
            suspect_to_down: Duration::from_secs(4),
            gossip_interval: Duration::from_millis(200),
            fanout: 3,
            cluster_size: 100,
        }
    }
}

impl Timing {
    fn config(&self) -> foca::Config {
        let mut c =
            foca::Config::new_lan(NonZeroU32::new(self.cluster_size.max(2)).unwrap_or(NonZeroU32::MIN));
        c.probe_period = self.probe_period;
        c.probe_rtt = self.probe_rtt;
        c.suspect_to_down_after = self.suspect_to_down;
        c.max_packet_size = NonZeroUsize::new(MAX_PACKET).unwrap_or(NonZeroUsize::MIN);
        c.max_transmissions = c
            .max_transmissions
            .max(NonZeroU8::new(6).unwrap_or(NonZeroU8::MIN));
        c.periodic_gossip = Some(foca::PeriodicParams {
            frequency: self.gossip_interval,
            num_members: NonZeroUsize::new(self.fanout.max(1)).unwrap_or(NonZeroUsize::MIN),
        });
        // Ask a random member for its whole view now and then: heals partitions.
        c.periodic_announce = Some(foca::PeriodicParams {
            frequency: Duration::from_secs(15),
            num_members: NonZeroUsize::MIN,
        });
        c
    }
}

/// How an agent gossips.
#[derive(Debug, Clone)]
pub struct GossipConfig {
    /// UDP listen address (port 0 picks one).
    pub listen: SocketAddr,
    /// Address announced to others; default: the bound address (with the listen host).
    pub advertise: Option<SocketAddr>,
    /// Addresses to announce to besides the gossip addresses of the `Agent` objects.
    pub seeds: Vec<SocketAddr>,
    /// Timing.
    pub timing: Timing,
}

/// A member as this agent sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// Agent name.
    pub name: String,
    /// Gossip address.
    pub gossip_address: String,
    /// `alive` or `suspect`.
    pub status: &'static str,
    /// What it last said of itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<AgentState>,
}

#[derive(Debug, Default)]
struct View {
    members: BTreeMap<String, Member>,
    dead: BTreeSet<String>,
}

enum Command {
    State(Box<AgentState>),
    Announce(Vec<(String, SocketAddr)>),
}

/// One running gossip member.
#[derive(Debug)]
pub struct Gossip {
    name: String,
    addr: SocketAddr,
    commands: mpsc::UnboundedSender<Command>,
    view: Arc<Mutex<View>>,
    states: States,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::State(_) => f.write_str("State"),
            Self::Announce(a) => write!(f, "Announce({})", a.len()),
        }
    }
}

fn now_ms() -> u64 {
    u64::try_from(jiff::Timestamp::now().as_millisecond()).unwrap_or(0)
}

impl Gossip {
    /// Binds the socket and starts gossiping as `name`.
    ///
    /// # Errors
    /// When the UDP socket cannot be bound.
    pub async fn start(
        name: &str,
        config: &GossipConfig,
        key: ClusterKey,
        metrics: SyncMetrics,
    ) -> std::io::Result<Self> {
        let socket = UdpSocket::bind(config.listen).await?;
        let bound = socket.local_addr()?;
        let addr = config.advertise.unwrap_or_else(|| {
            if bound.ip().is_unspecified() {
                tracing::warn!(%bound, "gossip listens on every interface; advertising 127.0.0.1 (set --gossip-advertise for other hosts)");
                SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), bound.port())
            } else {
                bound
            }
        });
        let id = Id {
            name: name.to_owned(),
            addr,
            generation: now_ms(),
        };
        let seed = u64::from_le_bytes(uuid::Uuid::new_v4().as_bytes()[..8].try_into().unwrap_or([7; 8]));
        let states = States::default();
        let foca = Foca::with_custom_broadcast(
            id,
            config.timing.config(),
            SmallRng::seed_from_u64(seed),
            PostcardCodec,
            states.clone(),
        );
        let (tx, rx) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let view = Arc::new(Mutex::new(View::default()));
        let member = Member {
            name: name.to_owned(),
            gossip_address: addr.to_string(),
            status: "alive",
            state: None,
        };
        view.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .members
            .insert(name.to_owned(), member);
        let seeds: Vec<(String, SocketAddr)> =
            config.seeds.iter().map(|a| (format!("seed:{a}"), *a)).collect();
        let task = tokio::spawn(
            Loop {
                foca,
                socket: Arc::new(socket),
                key,
                metrics,
                view: view.clone(),
                states: states.clone(),
                runtime: AccumulatingRuntime::new(),
                timers: mpsc::unbounded_channel(),
                suspects: HashSet::new(),
            }
            .run(rx, stop.clone(), seeds),
        );
        tracing::info!(gossip = %addr, "gossip started");
        Ok(Self {
            name: name.to_owned(),
            addr,
            commands: tx,
            view,
            states,
            stop,
            task: Some(task),
        })
    }

    /// The address others reach this member at.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Publishes this agent's state (its version is set here).
    pub fn set_state(&self, mut state: AgentState) {
        state.name.clone_from(&self.name);
        let _ = self.commands.send(Command::State(Box::new(state)));
    }

    /// Announces this member to others (named by agent, with their gossip addresses).
    pub fn announce(&self, to: Vec<(String, SocketAddr)>) {
        let _ = self.commands.send(Command::Announce(to));
    }

    fn view(&self) -> std::sync::MutexGuard<'_, View> {
        self.view
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Live members (alive or suspect), this one included, by name.
    pub fn members(&self) -> Vec<Member> {
        self.view().members.values().cloned().collect()
    }

    /// Members seen declared dead, by name.
    pub fn dead(&self) -> Vec<String> {
        self.view().dead.iter().cloned().collect()
    }

    /// The newest state each member announced.
    pub fn state_of(&self, name: &str) -> Option<AgentState> {
        self.states.get(name)
    }

    /// Leaves the cluster (others see it leave at once rather than suspecting it) and stops.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
    }

    /// Stops without a word to the others, as a crash would (for tests and the bench).
    pub fn kill(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Drop for Gossip {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

type Node = Foca<Id, PostcardCodec, SmallRng, States>;

struct Loop {
    foca: Node,
    socket: Arc<UdpSocket>,
    key: ClusterKey,
    metrics: SyncMetrics,
    view: Arc<Mutex<View>>,
    states: States,
    runtime: AccumulatingRuntime<Id>,
    timers: (
        mpsc::UnboundedSender<Timer<Id>>,
        mpsc::UnboundedReceiver<Timer<Id>>,
    ),
    suspects: HashSet<String>,
}

impl Loop {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        stop: CancellationToken,
        seeds: Vec<(String, SocketAddr)>,
    ) {
        self.announce(seeds);
        let mut buf = vec![0u8; 64 * 1024];
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut own: Option<AgentState> = None;
        let mut republished = Instant::now();
        loop {
            tokio::select! {
                received = self.socket.recv_from(&mut buf) => {
                    let Ok((n, _from)) = received else { continue };
                    match wire::open(&self.key, &buf[..n]) {
                        Ok(payload) => {
                            if let Err(e) = self.foca.handle_data(payload, &mut self.runtime) {
                                self.metrics.gossip_rejected.inc();
                                tracing::debug!(error = %e, "malformed gossip packet");
                            }
                        }
                        Err(why) => {
                            self.metrics.gossip_rejected.inc();
                            tracing::debug!(%why, "gossip packet refused");
                        }
                    }
                }
                Some(timer) = self.timers.1.recv() => {
                    let _ = self.foca.handle_timer(timer, &mut self.runtime);
                }
                command = commands.recv() => match command {
                    Some(Command::State(state)) => {
                        let mut state = *state;
                        state.version = now_ms().max(own.as_ref().map_or(0, |o| o.version + 1));
                        self.publish(&state);
                        own = Some(state);
                        republished = Instant::now();
                    }
                    Some(Command::Announce(to)) => self.announce(to),
                    None => break,
                },
                _ = tick.tick() => {
                    // A newcomer learns the others' states from their periodic re-publication.
                    if republished.elapsed() > Duration::from_secs(10)
                        && let Some(o) = own.as_mut()
                    {
                        o.version = now_ms().max(o.version + 1);
                        let o = o.clone();
                        self.publish(&o);
                        republished = Instant::now();
                    }
                    self.refresh();
                }
                () = stop.cancelled() => {
                    let _ = self.foca.leave_cluster(&mut self.runtime);
                    self.drain().await;
                    break;
                }
            }
            self.drain().await;
        }
    }

    fn publish(&mut self, state: &AgentState) {
        match state::encode(state) {
            Ok(bytes) => {
                if let Err(e) = self.foca.add_broadcast(&bytes) {
                    tracing::warn!(error = %e, "could not publish the agent's state");
                }
                self.states.put(state.clone());
            }
            Err(e) => tracing::warn!(error = %e, "could not encode the agent's state"),
        }
    }

    fn announce(&mut self, to: Vec<(String, SocketAddr)>) {
        let me = self.foca.identity().clone();
        for (name, addr) in to {
            if name == me.name || addr == me.addr {
                continue;
            }
            // Generation 0: the member's real identity (a newer generation) replaces it.
            let _ = self.foca.announce(
                Id {
                    name,
                    addr,
                    generation: 0,
                },
                &mut self.runtime,
            );
        }
    }

    /// Sends what foca produced, schedules its timers and applies its notifications.
    async fn drain(&mut self) {
        let mut changed = false;
        while let Some((to, data)) = self.runtime.to_send() {
            let packet = wire::seal(&self.key, &data);
            if let Err(e) = self.socket.send_to(&packet, to.addr).await {
                tracing::debug!(to = %to.addr, error = %e, "gossip send failed");
            }
        }
        while let Some((after, timer)) = self.runtime.to_schedule() {
            let tx = self.timers.0.clone();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                let _ = tx.send(timer);
            });
        }
        while let Some(note) = self.runtime.to_notify() {
            changed = true;
            match note {
                OwnedNotification::MemberDown(id) => {
                    self.metrics.gossip_deaths.inc();
                    tracing::info!(member = %id.name, "gossip member declared down");
                    self.states.forget(&id.name);
                    let mut v = self
                        .view
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    v.dead.insert(id.name.clone());
                }
                OwnedNotification::MemberUp(id) => {
                    tracing::debug!(member = %id.name, "gossip member up");
                    let mut v = self
                        .view
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    v.dead.remove(&id.name);
                }
                OwnedNotification::Defunct => tracing::warn!("this agent was declared down by the others"),
                OwnedNotification::Rejoin(id) => {
                    tracing::info!(generation = id.generation, "rejoined the gossip");
                }
                _ => {}
            }
        }
        if changed {
            self.refresh();
        }
    }

    /// Rebuilds the view from foca's membership.
    fn refresh(&mut self) {
        let me = self.foca.identity().clone();
        let mut members = BTreeMap::new();
        let mut suspects = HashSet::new();
        for m in self.foca.iter_members() {
            let suspect = m.state() == foca::State::Suspect;
            if suspect {
                suspects.insert(m.id().name.clone());
            }
            members.insert(
                m.id().name.clone(),
                Member {
                    name: m.id().name.clone(),
                    gossip_address: m.id().addr.to_string(),
                    status: if suspect { "suspect" } else { "alive" },
                    state: None,
                },
            );
        }
        for s in suspects.difference(&self.suspects) {
            self.metrics.gossip_suspicions.inc();
            tracing::info!(member = %s, "gossip member suspected");
        }
        self.suspects = suspects;
        members.insert(
            me.name.clone(),
            Member {
                name: me.name.clone(),
                gossip_address: me.addr.to_string(),
                status: "alive",
                state: None,
            },
        );
        for m in members.values_mut() {
            m.state = self.states.get(&m.name);
        }
        let mut v = self
            .view
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.metrics
            .gossip_members
            .set(i64::try_from(members.len()).unwrap_or(i64::MAX));
        v.members = members;
    }
}

#[cfg(test)]
mod tests;
