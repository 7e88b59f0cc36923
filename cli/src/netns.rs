//! Several hosts on one machine, each in a network namespace of its own, for the tests and
//! benchmarks of what crosses a network (`tests/tests/fleet_netns.rs`, `ringrift bench wan`): every host is joined by a veth pair to a bridge that lives in a namespace
//! of its own (not the machine's), each link is shaped with `tc tbf` at both ends, and a host
//! may sit behind NAT (a router namespace with nftables masquerade and no inbound path), as a
//! rented GPU box does. The test process itself reaches the bridged hosts through one more
//! veth pair (the operator's machine on the same LAN); nobody outside can reach the NAT'd one.
//!
//! Addresses are in 198.18.0.0/15 only (set aside for network benchmarks): bridged hosts in
//! `198.18.<subnet>.0/24`, NAT'd ones in `198.19.<subnet>.<4i>/30`. Everything is named with
//! the test's prefix, swept at start (what a killed run left) and removed on drop, processes
//! first (deleting a namespace does not stop what runs in it).
//!
//! Needs root (CI runs as root), `ip` and `tc` (iproute2) and `nft` (nftables), which
//! `scripts/install-tools.sh` installs from Debian.

use std::process::Command;
use std::time::{Duration, Instant};

/// One host to build.
#[derive(Debug, Clone, Copy)]
pub struct Plan<'a> {
    /// Its short name (letters and digits, at most 6 characters).
    pub name: &'a str,
    /// Whether it sits behind NAT (it can dial out; nobody can dial in).
    pub nat: bool,
}

/// A host that was built.
#[derive(Debug, Clone)]
pub struct Host {
    /// Its short name.
    pub name: String,
    /// Its network namespace.
    pub netns: String,
    /// Its address.
    pub addr: String,
    /// Behind NAT.
    pub nat: bool,
    /// The router namespace in front of it, when NAT'd.
    router: Option<String>,
}

impl Host {
    /// `program args…` to run in this host (`ip netns exec <netns> …`: the process it starts
    /// is `program` itself).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.netns, program]);
        c
    }

    /// The arguments of `ip` that run `program args…` in this host (for a harness that spawns `ip`).
    pub fn wrap(&self, program: &str, args: &[String]) -> Vec<String> {
        let mut out = vec![
            "netns".to_owned(),
            "exec".to_owned(),
            self.netns.clone(),
            program.to_owned(),
        ];
        out.extend(args.iter().cloned());
        out
    }
}

/// The network; removed, processes and all, when dropped.
#[derive(Debug)]
pub struct Net {
    prefix: String,
    bridge: String,
    uplink: String,
    /// The hosts, in the order planned.
    pub hosts: Vec<Host>,
    /// The rate every link is shaped to (`tc` syntax, for example `1gbit`).
    pub rate: String,
    /// Delay added at each end of every link, ms (`netem`; 0: none).
    pub delay_ms: u32,
}

/// Whether this process runs as root (the network namespaces need it).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// Runs `ip`, `tc` or `nft` (or anything), failing with what it printed.
///
/// # Errors
/// When it cannot run or exits non-zero.
pub fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {program}: {e} (scripts/install-tools.sh installs it)"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `program args…` inside `netns`.
fn within(netns: &str, program: &str, args: &[&str]) -> Result<String, String> {
    let mut all = vec!["netns", "exec", netns, program];
    all.extend_from_slice(args);
    run("ip", &all)
}

/// Kills every process in `netns` (SIGKILL) and waits, at most 10 s, until none is left.
fn kill_all(netns: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pids = run("ip", &["netns", "pids", netns]).unwrap_or_default();
        let pids: Vec<&str> = pids.split_whitespace().collect();
        if pids.is_empty() || Instant::now() > deadline {
            return;
        }
        for pid in pids {
            let _ = run("kill", &["-KILL", pid]);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Removes `netns` and everything running in it.
fn remove_netns(netns: &str) {
    kill_all(netns);
    let _ = run("ip", &["netns", "del", netns]);
}

/// Removes what an earlier run with `prefix` left: its namespaces (processes first) and the
/// machine-side end of its uplink.
pub fn sweep(prefix: &str) {
    let list = run("ip", &["netns", "list"]).unwrap_or_default();
    for line in list.lines() {
        if let Some(name) = line.split_whitespace().next()
            && name.starts_with(prefix)
        {
            remove_netns(name);
        }
    }
    let _ = run("ip", &["link", "del", "dev", &format!("{prefix}u")]);
}

/// Shapes egress of `dev` in `netns` to `rate` (a burst of 256 KiB: less starves a fast link),
/// behind `delay_ms` of `netem` delay when that is not 0.
fn shape(netns: &str, dev: &str, rate: &str, delay_ms: u32) -> Result<(), String> {
    let tbf = ["tbf", "rate", rate, "burst", "256kb", "latency", "100ms"];
    if delay_ms == 0 {
        let mut args = vec!["qdisc", "replace", "dev", dev, "root"];
        args.extend(tbf);
        return within(netns, "tc", &args).map(drop);
    }
    let delay = format!("{delay_ms}ms");
    within(
        netns,
        "tc",
        &[
            "qdisc", "replace", "dev", dev, "root", "handle", "1:", "netem", "delay", &delay,
        ],
    )
    .map_err(|e| format!("{e} (a delay needs netem, which this kernel may lack: sch_netem)"))?;
    let mut args = vec!["qdisc", "replace", "dev", dev, "parent", "1:", "handle", "2:"];
    args.extend(tbf);
    within(netns, "tc", &args).map(drop)
}

fn up(netns: &str, dev: &str) -> Result<(), String> {
    within(netns, "ip", &["link", "set", "dev", dev, "up"]).map(drop)
}

/// A new namespace with its loopback up (a new one has `lo` down).
fn add_netns(name: &str) -> Result<(), String> {
    run("ip", &["netns", "add", name])?;
    up(name, "lo")
}

impl Net {
    /// Builds the bridge, the uplink from the machine (`198.18.<subnet>.1`) and every host in
    /// `plan`, each link shaped to `rate`. `prefix` (at most 6 characters) names everything and
    /// is swept first.
    ///
    /// # Errors
    /// When a step fails (what was built is removed).
    pub fn build(prefix: &str, subnet: u8, plan: &[Plan<'_>], rate: &str) -> Result<Self, String> {
        Self::build_with_delay(prefix, subnet, plan, rate, 0)
    }

    /// [`Net::build`], every link also delayed by `delay_ms` at each end (`netem`; an error
    /// where the kernel has none).
    ///
    /// # Errors
    /// When a step fails (what was built is removed).
    pub fn build_with_delay(
        prefix: &str,
        subnet: u8,
        plan: &[Plan<'_>],
        rate: &str,
        delay_ms: u32,
    ) -> Result<Self, String> {
        if prefix.len() > 6 || plan.iter().any(|p| p.name.len() > 6) {
            return Err(
                "prefix and host names: at most 6 characters (interface names are at most 15)".into(),
            );
        }
        sweep(prefix);
        let mut net = Self {
            prefix: prefix.to_owned(),
            bridge: format!("{prefix}-br"),
            uplink: format!("{prefix}u"),
            hosts: Vec::new(),
            rate: rate.to_owned(),
            delay_ms,
        };
        net.build_bridge(subnet)?;
        for (i, p) in plan.iter().enumerate() {
            let index = u8::try_from(i + 1).map_err(|_| "too many hosts".to_owned())?;
            let host = if p.nat {
                net.build_nat_host(subnet, index, p.name)?
            } else {
                net.build_host(subnet, index, p.name)?
            };
            net.hosts.push(host);
        }
        Ok(net)
    }

    fn build_bridge(&self, subnet: u8) -> Result<(), String> {
        let br = &self.bridge;
        add_netns(br)?;
        within(br, "ip", &["link", "add", "name", "br0", "type", "bridge"])?;
        up(br, "br0")?;
        run(
            "ip",
            &[
                "link",
                "add",
                "name",
                &self.uplink,
                "type",
                "veth",
                "peer",
                "name",
                "uplink",
                "netns",
                br,
            ],
        )?;
        within(br, "ip", &["link", "set", "dev", "uplink", "master", "br0"])?;
        up(br, "uplink")?;
        run(
            "ip",
            &[
                "addr",
                "add",
                &format!("198.18.{subnet}.1/24"),
                "dev",
                &self.uplink,
            ],
        )?;
        run("ip", &["link", "set", "dev", &self.uplink, "up"])?;
        Ok(())
    }

    /// A port on the bridge named `port`, whose other end is `dev` in `netns`, shaped both ways.
    fn plug(&self, port: &str, netns: &str, dev: &str) -> Result<(), String> {
        let br = &self.bridge;
        within(
            br,
            "ip",
            &[
                "link", "add", "name", port, "type", "veth", "peer", "name", dev, "netns", netns,
            ],
        )?;
        within(br, "ip", &["link", "set", "dev", port, "master", "br0"])?;
        up(br, port)?;
        up(netns, dev)?;
        shape(br, port, &self.rate, self.delay_ms)?;
        shape(netns, dev, &self.rate, self.delay_ms)
    }

    fn build_host(&self, subnet: u8, index: u8, name: &str) -> Result<Host, String> {
        let netns = format!("{}-{name}", self.prefix);
        add_netns(&netns)?;
        self.plug(name, &netns, "eth0")?;
        let addr = format!("198.18.{subnet}.{}", 10 + index);
        within(
            &netns,
            "ip",
            &["addr", "add", &format!("{addr}/24"), "dev", "eth0"],
        )?;
        Ok(Host {
            name: name.to_owned(),
            netns,
            addr,
            nat: false,
            router: None,
        })
    }

    fn build_nat_host(&self, subnet: u8, index: u8, name: &str) -> Result<Host, String> {
        let netns = format!("{}-{name}", self.prefix);
        let router = format!("{}-{name}r", self.prefix);
        add_netns(&router)?;
        self.plug(name, &router, "up0")?;
        within(
            &router,
            "ip",
            &[
                "addr",
                "add",
                &format!("198.18.{subnet}.{}/24", 100 + index),
                "dev",
                "up0",
            ],
        )?;
        within(&router, "sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
        add_netns(&netns)?;
        within(
            &router,
            "ip",
            &[
                "link", "add", "name", "in0", "type", "veth", "peer", "name", "eth0", "netns", &netns,
            ],
        )?;
        up(&router, "in0")?;
        up(&netns, "eth0")?;
        let base = 4 * index;
        within(
            &router,
            "ip",
            &[
                "addr",
                "add",
                &format!("198.19.{subnet}.{}/30", base + 1),
                "dev",
                "in0",
            ],
        )?;
        let addr = format!("198.19.{subnet}.{}", base + 2);
        within(
            &netns,
            "ip",
            &["addr", "add", &format!("{addr}/30"), "dev", "eth0"],
        )?;
        within(
            &netns,
            "ip",
            &[
                "route",
                "add",
                "default",
                "via",
                &format!("198.19.{subnet}.{}", base + 1),
            ],
        )?;
        // Out through the router's address; in only what answers a connection from inside.
        let rules = "table ip nat {\n\
             chain postrouting { type nat hook postrouting priority srcnat; oifname \"up0\" masquerade; }\n\
             }\n\
             table ip filter {\n\
             chain forward { type filter hook forward priority filter; policy drop;\n\
             ct state established,related accept; iifname \"in0\" oifname \"up0\" accept; }\n\
             }\n";
        let file = std::env::temp_dir().join(format!("{router}.nft"));
        std::fs::write(&file, rules).map_err(|e| e.to_string())?;
        let loaded = within(&router, "nft", &["-f", &file.display().to_string()]);
        let _ = std::fs::remove_file(&file);
        loaded?;
        Ok(Host {
            name: name.to_owned(),
            netns,
            addr,
            nat: true,
            router: Some(router),
        })
    }

    /// The host named `name`.
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// Sends `signal` (`STOP`, `CONT`, …) to every process in host `name`: a frozen host says
    /// nothing until it is thawed (or its plug is pulled).
    pub fn signal_host(&self, name: &str, signal: &str) {
        if let Some(host) = self.host(name) {
            let pids = run("ip", &["netns", "pids", &host.netns]).unwrap_or_default();
            for pid in pids.split_whitespace() {
                let _ = run("kill", &[&format!("-{signal}"), pid]);
            }
        }
    }

    /// Pulls the plug on `name`: every process in it killed, its namespace (and router) gone.
    pub fn kill_host(&mut self, name: &str) {
        if let Some(i) = self.hosts.iter().position(|h| h.name == name) {
            let host = self.hosts.remove(i);
            remove_netns(&host.netns);
            if let Some(r) = &host.router {
                remove_netns(r);
            }
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for host in std::mem::take(&mut self.hosts) {
            remove_netns(&host.netns);
            if let Some(r) = &host.router {
                remove_netns(r);
            }
        }
        remove_netns(&self.bridge);
        let _ = run("ip", &["link", "del", "dev", &self.uplink]);
        sweep(&self.prefix);
    }
}
