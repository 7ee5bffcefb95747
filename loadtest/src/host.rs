//! The machine around a run: how much of its CPU time the hypervisor took.
//!
//! On a virtual machine whose host is oversubscribed, the guest's vCPUs are
//! sometimes not running at all ("steal" in /proc/stat). Neither the server
//! nor the client can do anything about it, yet it shows up in their
//! latency: on the 2-vCPU guest of bench/README.md, windows with 20–40% steal
//! had p99s 3–10× those of windows with none, for every server alike. Each
//! run reports the steal of its measurement window so that such a window can
//! be told apart from a slow server (bench/compare measures it again).

/// The machine's CPU time so far, summed over every CPU, in clock ticks
/// (`USER_HZ`), from the `cpu` line of /proc/stat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// Every kind of time: user, nice, system, idle, iowait, irq, softirq,
    /// steal (guest time is already inside user and nice).
    pub total: u64,
    /// Time the hypervisor ran something else while a vCPU wanted to run.
    pub steal: u64,
}

impl CpuTimes {
    /// Reads /proc/stat now; `None` where there is none (not Linux).
    pub fn now() -> Option<CpuTimes> {
        CpuTimes::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// The `cpu` line (the sum over CPUs) of a /proc/stat text.
    pub fn parse(stat: &str) -> Option<CpuTimes> {
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        let f: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(|v| v.parse().ok())
            .collect::<Option<_>>()?;
        Some(CpuTimes {
            total: f.iter().sum(),
            steal: *f.get(7).unwrap_or(&0),
        })
    }

    /// Steal between `self` and a later sample, in % of the machine's CPU
    /// time (100% = every vCPU taken the whole time).
    pub fn steal_percent_until(&self, later: &CpuTimes) -> f64 {
        let total = later.total.saturating_sub(self.total);
        if total == 0 {
            return 0.0;
        }
        later.steal.saturating_sub(self.steal) as f64 / total as f64 * 100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  75475 0 14013 27453 881 0 4563 7290 0 0\n\
                        cpu0 37602 0 6873 14403 188 0 2180 3598 0 0\n\
                        intr 1 2 3\n";

    #[test]
    fn reads_the_summed_cpu_line() {
        let t = CpuTimes::parse(STAT).expect("a cpu line");
        assert_eq!(t.steal, 7290);
        assert_eq!(t.total, 75475 + 14013 + 27453 + 881 + 4563 + 7290);
        assert_eq!(CpuTimes::parse("intr 1 2\n"), None);
    }

    #[test]
    fn steal_is_a_share_of_all_time_that_passed() {
        let a = CpuTimes {
            total: 1000,
            steal: 10,
        };
        let b = CpuTimes {
            total: 1400,
            steal: 110,
        };
        assert_eq!(a.steal_percent_until(&b), 25.0);
        assert_eq!(a.steal_percent_until(&a), 0.0);
    }
}
