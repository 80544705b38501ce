//! CPU time spent over a bench phase, by the server and by the bench itself.
//!
//! Throughput on this kind of machine moves by a fifth from one hour to the next, with
//! whatever else shares the host. The CPU time a request costs the server moves far less,
//! so each phase reports it beside its throughput: it is the figure that shows whether a
//! change made a path cheaper. The bench's own CPU time shows how much of the machine the
//! load generator took from the server (they share its cores).

use std::time::Duration;

/// Linux reports process times in clock ticks of `USER_HZ`, which is 100 on every
/// architecture Linux exposes it on (it is part of the user-space ABI).
const TICKS_PER_SECOND: u64 = 100;

/// User plus system time of process `pid` (every thread), from `/proc/<pid>/stat`.
fn process_cpu(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_ticks(&stat).map(|ticks| Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND))
}

/// `utime + stime` of a `/proc/<pid>/stat` line. The command name (field 2) is in
/// parentheses and may hold spaces, so fields are counted from its closing parenthesis.
fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    // Fields 3.. follow the name; utime and stime are fields 14 and 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// CPU time the server and the bench used over one phase.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PhaseCpu {
    pub(crate) server: Duration,
    pub(crate) bench: Duration,
}

/// Started when a phase starts; [`CpuMeter::finish`] says what the phase used.
#[derive(Debug)]
pub(crate) struct CpuMeter {
    server_pid: Option<String>,
    server_at_start: Option<Duration>,
    bench_at_start: Option<Duration>,
}

impl CpuMeter {
    pub(crate) fn start(server_pid: Option<u32>) -> Self {
        let server_pid = server_pid.map(|pid| pid.to_string());
        Self {
            server_at_start: server_pid.as_deref().and_then(process_cpu),
            bench_at_start: process_cpu("self"),
            server_pid,
        }
    }

    /// None when either process's times could not be read (not Linux, or the server gone).
    pub(crate) fn finish(&self) -> Option<PhaseCpu> {
        let server_now = process_cpu(self.server_pid.as_deref()?)?;
        let bench_now = process_cpu("self")?;
        Some(PhaseCpu {
            server: server_now.saturating_sub(self.server_at_start?),
            bench: bench_now.saturating_sub(self.bench_at_start?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_times_are_read_after_the_command_name() {
        // A name with spaces and a parenthesis must not shift the fields.
        let stat = "4242 (haven (x) y) S 1 4242 4242 0 -1 4194560 2010 0 0 0 731 269 0 0 20 0 9 0";
        assert_eq!(parse_stat_ticks(stat), Some(1000));
    }

    #[test]
    fn a_truncated_line_reads_as_nothing() {
        assert_eq!(parse_stat_ticks("4242 (haven) S 1 4242"), None);
        assert_eq!(parse_stat_ticks("no name here"), None);
    }

    #[test]
    fn this_process_has_used_some_cpu() {
        let meter = CpuMeter::start(Some(std::process::id()));
        let mut spin = 0u64;
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_millis(50) {
            spin = spin.wrapping_add(1);
        }
        std::hint::black_box(spin);
        let used = meter.finish().expect("this process's times are readable");
        assert!(used.server >= Duration::from_millis(10), "{used:?}");
        assert_eq!(used.server, used.bench);
    }
}
