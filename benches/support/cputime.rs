//! CPU-time clocks for the benches and the measuring examples (`#[path]`-included by each): time a
//! thread spends on a CPU, so that figures taken on a machine shared with other work still say what
//! the code costs. Linux; elsewhere, or if the clock fails, the wall clock.
#![allow(dead_code)] // each includer uses part of it

use std::time::Duration;

/// `CLOCK_THREAD_CPUTIME_ID` (Linux): the calling thread's CPU time.
pub const THREAD: i32 = 3;
/// `CLOCK_PROCESS_CPUTIME_ID` (Linux): the CPU time of every thread of the process.
pub const PROCESS: i32 = 2;

#[cfg(target_os = "linux")]
#[repr(C)]
struct Timespec {
    sec: i64,
    nsec: i64,
}

#[cfg(target_os = "linux")]
unsafe extern "C" {
    fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
}

/// The time on `clock` ([`THREAD`] or [`PROCESS`]), from an arbitrary start.
pub fn duration(clock: i32) -> Duration {
    #[cfg(target_os = "linux")]
    {
        let mut t = Timespec { sec: 0, nsec: 0 };
        // SAFETY: `t` is a valid, writable timespec for the call's duration.
        if unsafe { clock_gettime(clock, &mut t) } == 0 {
            return Duration::new(t.sec.max(0) as u64, t.nsec.clamp(0, 999_999_999) as u32);
        }
    }
    let _ = clock;
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(std::time::Instant::now).elapsed()
}

/// [`duration`] in seconds.
pub fn seconds(clock: i32) -> f64 {
    duration(clock).as_secs_f64()
}
