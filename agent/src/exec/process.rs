//! Processes and process groups: liveness that survives pid reuse, and stopping a whole group.

use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process_group, test_kill_process_group};

/// The start time of a process (clock ticks after boot, field 22 of `/proc/<pid>/stat`), or
/// `None` when there is no such process or it is a zombie. Together with the pid it names one
/// process for good: a reused pid has another start time.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

/// Field 22 of a `/proc/<pid>/stat` line, skipping zombies (state `Z`) and dead (`X`) ones.
pub fn parse_start_time(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may itself hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // `rest` starts at field 3 (state); field 22 is 19 further on.
    fields.nth(18)?.parse().ok()
}

/// The process group of a process (field 5 of `/proc/<pid>/stat`).
pub fn group_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// Whether the process `pid` started at `started` is still running.
pub fn alive(pid: u32, started: u64) -> bool {
    start_time(pid) == Some(started)
}

fn pid(raw: u32) -> Option<Pid> {
    i32::try_from(raw).ok().and_then(Pid::from_raw)
}

/// Whether any process of the group `pgid` exists.
pub fn group_alive(pgid: u32) -> bool {
    pid(pgid).is_some_and(|p| test_kill_process_group(p).is_ok())
}

/// Sends `signal` to every process of the group.
pub fn signal_group(pgid: u32, signal: Signal) {
    if let Some(p) = pid(pgid)
        && let Err(e) = kill_process_group(p, signal)
        && e != rustix::io::Errno::SRCH
    {
        tracing::warn!(pgid, error = %e, "failed to signal a process group");
    }
}

/// Stops a whole process group: SIGTERM, then SIGKILL for what is left after `grace`. Returns
/// once the group is gone (or after a few more seconds if something cannot be killed).
pub async fn stop_group(pgid: u32, grace: Duration) {
    signal_group(pgid, Signal::TERM);
    if !wait_gone(pgid, grace).await {
        tracing::info!(
            pgid,
            grace_s = grace.as_secs_f64(),
            "process group outlived its grace period; killing it"
        );
        signal_group(pgid, Signal::KILL);
        if !wait_gone(pgid, Duration::from_secs(5)).await {
            tracing::warn!(pgid, "process group still exists after SIGKILL");
        }
    }
}

async fn wait_gone(pgid: u32, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if !group_alive(pgid) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_skips_odd_command_names_and_zombies() {
        let line =
            "1234 (my (odd) cmd) S 1 1234 1234 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 987654 1000 10 0 0";
        assert_eq!(parse_start_time(line), Some(987_654));
        let zombie = "1234 (x) Z 1 1234 1234 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_start_time(zombie), None);
        assert_eq!(parse_start_time("garbage"), None);
    }

    #[test]
    fn this_process_is_alive_and_a_wrong_start_time_is_not() {
        let me = std::process::id();
        let started = start_time(me).unwrap();
        assert!(alive(me, started));
        assert!(!alive(me, started + 1));
        assert!(group_of(me).is_some());
    }
}
