//! CPU time and memory of a process, read from `/proc` (Linux): user and
//! system seconds from `/proc/PID/stat`, peak and current resident memory
//! from `/proc/PID/status`. Used for the load generator itself and for the
//! proxy under test (`--proxy-pid`), which may be several processes (an
//! nginx's workers, say) whose figures are added up.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Serialize;

/// Which process to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pid {
    /// This process.
    Myself,
    /// Another process.
    Other(u32),
}

impl Pid {
    fn dir(self) -> String {
        match self {
            Pid::Myself => "/proc/self".to_owned(),
            Pid::Other(pid) => format!("/proc/{pid}"),
        }
    }
}

/// CPU time a process has used so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// Time in user mode.
    pub user: Duration,
    /// Time in the kernel on its behalf.
    pub system: Duration,
}

impl CpuTimes {
    /// Reads the CPU times of `pid`.
    pub fn read(pid: Pid) -> Result<CpuTimes> {
        let path = format!("{}/stat", pid.dir());
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let (user, system) = parse_stat(&text).with_context(|| format!("parsing {path}"))?;
        let hz = rustix::param::clock_ticks_per_second().max(1);
        let ticks = |t: u64| Duration::from_secs_f64(t as f64 / hz as f64);
        Ok(CpuTimes {
            user: ticks(user),
            system: ticks(system),
        })
    }

    /// The CPU times of several processes, added up.
    pub fn read_sum(pids: &[u32]) -> Result<CpuTimes> {
        pids.iter().try_fold(CpuTimes::default(), |sum, &pid| {
            Ok(sum.plus(CpuTimes::read(Pid::Other(pid))?))
        })
    }

    /// Both times added to `other`'s.
    pub fn plus(self, other: CpuTimes) -> CpuTimes {
        CpuTimes {
            user: self.user + other.user,
            system: self.system + other.system,
        }
    }

    /// The time used between `earlier` and `self`.
    pub fn since(self, earlier: CpuTimes) -> CpuTimes {
        CpuTimes {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }
}

/// CPU seconds, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CpuSeconds {
    /// User seconds.
    pub user_s: f64,
    /// System seconds.
    pub sys_s: f64,
    /// Both.
    pub total_s: f64,
}

impl From<CpuTimes> for CpuSeconds {
    fn from(t: CpuTimes) -> CpuSeconds {
        CpuSeconds {
            user_s: t.user.as_secs_f64(),
            sys_s: t.system.as_secs_f64(),
            total_s: (t.user + t.system).as_secs_f64(),
        }
    }
}

/// Fields 14 and 15 of `/proc/PID/stat` (utime, stime) in clock ticks. The
/// second field (the command name) is in parentheses and may itself hold
/// spaces and parentheses, so fields are counted from the last `)`.
fn parse_stat(text: &str) -> Result<(u64, u64)> {
    let Some(close) = text.rfind(')') else {
        bail!("no command name");
    };
    // After ") " come field 3 (state), 4, ...; utime is field 14.
    let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
    let field = |n: usize| -> Result<u64> {
        fields
            .get(n - 3)
            .with_context(|| format!("no field {n}"))?
            .parse()
            .with_context(|| format!("field {n} is not a number"))
    };
    Ok((field(14)?, field(15)?))
}

/// Memory figures from `/proc/PID/status`, in KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Memory {
    /// Peak resident set (VmHWM).
    pub peak_rss_kib: Option<u64>,
    /// Resident set now (VmRSS).
    pub rss_kib: Option<u64>,
}

impl Memory {
    /// Reads the memory figures of `pid`.
    pub fn read(pid: Pid) -> Result<Memory> {
        let path = format!("{}/status", pid.dir());
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        Ok(parse_status(&text))
    }

    /// The memory figures of several processes, added up: an upper bound
    /// of their joint peak (each peaked at its own moment) and, for pages
    /// they share, counted once for each process.
    pub fn read_sum(pids: &[u32]) -> Result<Memory> {
        pids.iter().try_fold(Memory::default(), |sum, &pid| {
            Ok(sum.plus(Memory::read(Pid::Other(pid))?))
        })
    }

    /// Each figure added to `other`'s; a figure missing on either side
    /// stays whatever the other side has.
    pub fn plus(self, other: Memory) -> Memory {
        let add = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        Memory {
            peak_rss_kib: add(self.peak_rss_kib, other.peak_rss_kib),
            rss_kib: add(self.rss_kib, other.rss_kib),
        }
    }
}

fn parse_status(text: &str) -> Memory {
    let kib = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    };
    Memory {
        peak_rss_kib: kib("VmHWM"),
        rss_kib: kib("VmRSS"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_an_odd_command_name() -> Result<()> {
        let line = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    1234 567 0 0 20 0 9 0 100 1000 50 18446744073709551615";
        assert_eq!(parse_stat(line)?, (1234, 567));
        assert!(parse_stat("4242 (x) S 1").is_err());
        assert!(parse_stat("garbage").is_err());
        Ok(())
    }

    #[test]
    fn status_memory_lines() {
        let text = "Name:\toutpost\nVmPeak:\t  9999 kB\nVmHWM:\t    2048 kB\nVmRSS:\t    1024 kB\n";
        assert_eq!(
            parse_status(text),
            Memory {
                peak_rss_kib: Some(2048),
                rss_kib: Some(1024)
            }
        );
        assert_eq!(parse_status("Name: kthread\n"), Memory::default());
    }

    #[test]
    fn own_process_can_be_read() -> Result<()> {
        let before = CpuTimes::read(Pid::Myself)?;
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let after = CpuTimes::read(Pid::Myself)?;
        assert!(after.user + after.system >= before.user + before.system);
        assert!(Memory::read(Pid::Myself)?.peak_rss_kib.is_some());
        assert!(CpuTimes::read(Pid::Other(u32::MAX)).is_err());
        Ok(())
    }

    #[test]
    fn several_processes_are_added_up() -> Result<()> {
        let me = std::process::id();
        let one = CpuTimes::read_sum(&[me])?;
        let two = CpuTimes::read_sum(&[me, me])?;
        // Twice the same process: at least twice what one read saw earlier.
        assert!(two.user + two.system >= (one.user + one.system) * 2);
        let peak = Memory::read_sum(&[me])?.peak_rss_kib.expect("VmHWM");
        let both = Memory::read_sum(&[me, me])?.peak_rss_kib.expect("VmHWM");
        assert!(both >= 2 * peak);
        assert!(CpuTimes::read_sum(&[me, u32::MAX]).is_err());
        assert_eq!(CpuTimes::read_sum(&[])?, CpuTimes::default());

        let a = Memory {
            peak_rss_kib: Some(10),
            rss_kib: None,
        };
        let b = Memory {
            peak_rss_kib: Some(5),
            rss_kib: Some(3),
        };
        assert_eq!(
            a.plus(b),
            Memory {
                peak_rss_kib: Some(15),
                rss_kib: Some(3)
            }
        );
        Ok(())
    }
}
