//! What a measurement reads around itself: the time from CLOCK_MONOTONIC (never the
//! CPU's cycle counter, whose rate TCG does not keep honest), the guest's CPU time
//! from /proc/stat (all CPUs), and a device's counters from sysfs.

use std::fs;

/// CLOCK_MONOTONIC in nanoseconds.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid timespec for the call to fill; CLOCK_MONOTONIC always exists.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Jiffies per second of /proc/stat.
pub fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// The "cpu" line of /proc/stat: jiffies summed over all CPUs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cpu {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
}

impl Cpu {
    pub fn read() -> Cpu {
        let s = fs::read_to_string("/proc/stat").unwrap_or_default();
        let line = s.lines().find(|l| l.starts_with("cpu ")).unwrap_or("");
        let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
        let g = |i: usize| v.get(i).copied().unwrap_or(0);
        Cpu {
            user: g(0),
            nice: g(1),
            system: g(2),
            idle: g(3),
            iowait: g(4),
            irq: g(5),
            softirq: g(6),
            steal: g(7),
        }
    }

    pub fn since(&self, before: &Cpu) -> Cpu {
        Cpu {
            user: self.user.saturating_sub(before.user),
            nice: self.nice.saturating_sub(before.nice),
            system: self.system.saturating_sub(before.system),
            idle: self.idle.saturating_sub(before.idle),
            iowait: self.iowait.saturating_sub(before.iowait),
            irq: self.irq.saturating_sub(before.irq),
            softirq: self.softirq.saturating_sub(before.softirq),
            steal: self.steal.saturating_sub(before.steal),
        }
    }

    /// Jiffies not idle (guest time is already part of user).
    pub fn busy(&self) -> u64 {
        self.user + self.nice + self.system + self.irq + self.softirq + self.steal
    }

    /// Jiffies in the kernel: system, hard and soft interrupts.
    pub fn kernel(&self) -> u64 {
        self.system + self.irq + self.softirq
    }

    pub fn fields(&self) -> [(&'static str, u64); 8] {
        [
            ("user", self.user),
            ("nice", self.nice),
            ("system", self.system),
            ("idle", self.idle),
            ("iowait", self.iowait),
            ("irq", self.irq),
            ("softirq", self.softirq),
            ("steal", self.steal),
        ]
    }
}

/// A device's port-1 counters (sysfs hw_counters), sorted by name; empty where the
/// device has none.
pub fn counters(dev: &str) -> Vec<(String, u64)> {
    let dir = format!("/sys/class/infiniband/{dev}/ports/1/hw_counters");
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(&dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(v) = fs::read_to_string(e.path()).ok().and_then(|s| s.trim().parse().ok()) {
                out.push((name, v));
            }
        }
    }
    out.sort();
    out
}

/// after - before, per counter present in both.
pub fn counters_since(after: &[(String, u64)], before: &[(String, u64)]) -> Vec<(String, u64)> {
    after
        .iter()
        .filter_map(|(k, a)| {
            before.iter().find(|(kb, _)| kb == k).map(|(_, b)| (k.clone(), a.wrapping_sub(*b)))
        })
        .collect()
}

/// The CPUs online, as the kernel lists them ("0-1", "0").
pub fn cpus_online() -> String {
    fs::read_to_string("/sys/devices/system/cpu/online").map(|s| s.trim().to_string()).unwrap_or_default()
}
