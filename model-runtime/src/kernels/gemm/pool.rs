//! The GEMM's own thread pool and the user's thread count: persistent workers that run the parts
//! of one split GEMM beside the calling thread, without allocating.
//!
//! Workers are spawned the first time a split needs them (that call allocates their stacks and
//! names) and then live for the rest of the process. A job is handed over through one static
//! slot: the caller writes a pointer to its closure, publishes it with the next epoch, wakes the
//! workers, and then every thread claims chunks of the job from one atomic ticket until none is
//! left; the caller waits for the chunks still running. Workers spin briefly after a job (the
//! next GEMM of a training step usually follows within microseconds) and then park. Each worker
//! packs into its own thread-local scratch, which, like the caller's, grows once and is reused.
//!
//! Workers compute each job in the floating-point mode of the thread that published it (see
//! [`crate::fpenv`]): a product splits across threads without changing its results.
//!
//! One split GEMM runs at a time: a caller that finds the pool busy (another thread's GEMM is
//! split across it) runs its product on its own thread instead of waiting.
//!
//! Splits that do not pay back off ([`split_or_serial`]): each split is timed against the pace of
//! the last products of that size class run on the caller's thread alone (one in
//! [`CALIBRATE_EVERY`] is, to keep that pace current), and when it took at least 9/10 of that (the
//! other cores are busy with other processes, so a worker wakes late, is descheduled holding a
//! chunk, or shares the caller's core), the next 1, 2, 4, … up to 256 products that would be split
//! run on the caller's thread instead; one split that pays ends the back-off.

use std::cell::UnsafeCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, TryLockError};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use crate::fpenv;

/// The environment variable read (once, at the first GEMM) for the default thread count.
pub const THREADS_ENV: &str = "MODELC_NUM_THREADS";

/// Threads a GEMM may use; 0 until first read or set.
static THREADS: AtomicUsize = AtomicUsize::new(0);

/// Upper bound on the thread count, against typos like `MODELC_NUM_THREADS=1000`.
const MAX_THREADS: usize = 64;

/// How long an idle worker polls for the next job before parking.
const SPIN: Duration = Duration::from_micros(100);

/// Sets how many threads (the caller included) a large GEMM may be split across, from now on, for
/// the whole process. `1` makes every GEMM single-threaded; `0` is taken as 1. Products below
/// a measured size (8 M multiply-adds) always run on the calling thread, and larger ones too for a
/// while after splits that did not pay (other processes busy on the other cores).
///
/// The default is the `MODELC_NUM_THREADS` environment variable when set to a positive number,
/// else [`std::thread::available_parallelism`].
pub fn set_num_threads(n: usize) {
    THREADS.store(n.clamp(1, MAX_THREADS), Ordering::Relaxed);
}

/// The number of threads a large GEMM may use: the last [`set_num_threads`], else
/// `MODELC_NUM_THREADS`, else the number of CPUs available to the process.
#[inline]
pub fn num_threads() -> usize {
    match THREADS.load(Ordering::Relaxed) {
        0 => first_num_threads(),
        n => n,
    }
}

/// [`num_threads`] on its first call: settles the default.
#[cold]
fn first_num_threads() -> usize {
    let n = default_threads();
    // A concurrent `set_num_threads` wins over the default.
    let _ = THREADS.compare_exchange(0, n, Ordering::Relaxed, Ordering::Relaxed);
    THREADS.load(Ordering::Relaxed)
}

/// `MODELC_NUM_THREADS` if it is a positive integer, else the available parallelism.
fn default_threads() -> usize {
    let from_env = std::env::var(THREADS_ENV).ok().and_then(|v| v.trim().parse::<usize>().ok()).filter(|&n| n > 0);
    from_env.unwrap_or_else(|| thread::available_parallelism().map_or(1, |n| n.get())).min(MAX_THREADS)
}

/// Products that would be split still to run on the caller's thread (see the module docs).
static SKIP: AtomicU32 = AtomicU32::new(0);
/// Splits in a row that did not pay.
static POOR: AtomicU32 = AtomicU32::new(0);

/// A split pays when it takes less than this share of the time the caller alone would have taken
/// (the product's work at the last 1-thread pace of its size class).
/// Measured on 2 Zen 4 cores shared with other builds (BENCHMARKS.md, "Zen 4, December 2026"): with
/// the other core busy, M4's cells at batch 256 (splits of 100 M multiply-adds) took 1.19–1.45× their
/// 1-thread time on 2 threads; with it free, splits from 2 M multiply-adds up ran 1.4–2× faster
/// (BENCHMARKS.md, "Threads"), i.e. in 0.5–0.7× the time, well under 0.9.
const PAY_RATIO: f64 = 0.9;
/// The longest back-off, in products: about 40 of M4's training steps, after which a split is tried
/// again.
const MAX_SKIP: u32 = 256;

/// One product in this many that would be split runs on the caller's thread alone instead, timed,
/// so that splits are judged against a current 1-thread pace.
const CALIBRATE_EVERY: u32 = 16;
/// Products that would be split so far (for [`CALIBRATE_EVERY`]).
static TURN: AtomicU32 = AtomicU32::new(0);
/// Seconds per multiply-add of the products last run on the caller's thread alone ([`f64`] bits;
/// 0: none yet), per size class ([`size_class`]).
static SERIAL_PACE: [AtomicU64; 4] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

/// The size class of a product of `work` multiply-adds: under 16 M, under 64 M, under 256 M, more
/// (a product's pace depends on its size: small ones pay more per multiply-add for packing).
fn size_class(work: usize) -> usize {
    match work {
        w if w < 1 << 24 => 0,
        w if w < 1 << 26 => 1,
        w if w < 1 << 28 => 2,
        _ => 3,
    }
}

/// Runs a product of `work` multiply-adds, cut into `chunks` chunks `f(0..chunks)`, across the pool
/// (see [`try_run_timed`]), or runs `serial` (the same product on this thread) when recent splits did not
/// pay, when it is this size's turn to be timed alone, or when the pool is busy. Returns whether it
/// was split.
pub(super) fn split_or_serial<F: Fn(usize) + Sync>(work: usize, threads: usize, chunks: usize, f: &F, serial: impl FnOnce()) -> bool {
    let class = size_class(work);
    let pace = f64::from_bits(SERIAL_PACE[class].load(Ordering::Relaxed));
    let turn = TURN.fetch_add(1, Ordering::Relaxed).is_multiple_of(CALIBRATE_EVERY);
    if backing_off() || turn || pace == 0.0 {
        let start = Instant::now();
        serial();
        let per_mac = start.elapsed().as_secs_f64() / work.max(1) as f64;
        // Half the old pace and half the new: one run slowed by another process moves it by half.
        let mixed = if pace == 0.0 { per_mac } else { 0.5 * (pace + per_mac) };
        SERIAL_PACE[class].store(mixed.to_bits(), Ordering::Relaxed);
        return false;
    }
    let Some(total) = try_run_timed(threads, chunks, f) else {
        serial();
        return false;
    };
    let (poor, skip) = backoff_after(POOR.load(Ordering::Relaxed), total < PAY_RATIO * pace * work as f64);
    POOR.store(poor, Ordering::Relaxed);
    SKIP.store(skip, Ordering::Relaxed);
    true
}

/// Whether the product about to be split should run on the caller's thread, because recent splits
/// did not pay; counts the back-off down.
fn backing_off() -> bool {
    let skip = SKIP.load(Ordering::Relaxed);
    if skip == 0 {
        return false;
    }
    SKIP.store(skip - 1, Ordering::Relaxed);
    true
}

/// After `poor` splits in a row that did not pay, and one that did (`pays`) or did not: the new
/// streak and how many products to keep on the caller's thread (1, 2, 4, … [`MAX_SKIP`]).
fn backoff_after(poor: u32, pays: bool) -> (u32, u32) {
    if pays {
        return (0, 0);
    }
    let poor = (poor + 1).min(MAX_SKIP.ilog2() + 1);
    (poor, 1 << (poor - 1))
}

/// The job being run: `call(data, chunk)` for each chunk, by whichever thread claims it.
#[derive(Clone, Copy)]
struct Job {
    data: *const (),
    call: unsafe fn(*const (), usize),
    /// The caller's floating-point mode ([`fpenv::mode`]), which the workers adopt.
    mode: fpenv::arch::Word,
}

/// The hand-over slot between the caller and the workers.
struct Shared {
    /// The ticket: `epoch << 16 | chunks << 8 | next`, the current job's number, its chunk count
    /// and the next unclaimed chunk. Chunks are claimed by a compare-and-swap on the whole word, so
    /// a thread that claims a chunk knows it belongs to the job it read the epoch of. Stored with
    /// Release after `job` and `done` are written.
    ticket: AtomicU64,
    /// Written only by the caller that holds [`WORKERS`], before publishing a new epoch, and read
    /// only by threads that have claimed a chunk of that epoch, which the caller waits for.
    job: UnsafeCell<Job>,
    /// Chunks of the current job finished (incremented with Release).
    done: AtomicUsize,
    /// A chunk panicked during the current job.
    panicked: AtomicBool,
}

// SAFETY: `job` is only accessed as documented on the field: one writer (the lock holder) at a
// time, and never while a claimed chunk of the previous job is unfinished.
unsafe impl Sync for Shared {}

/// Bits of the ticket holding `next` and, above it, `chunks`.
const FIELD_BITS: u32 = 8;
/// At most this many chunks per job (the width of a ticket field).
pub(super) const MAX_CHUNKS: usize = (1 << FIELD_BITS) - 1;

static SHARED: Shared = Shared {
    ticket: AtomicU64::new(0),
    job: UnsafeCell::new(Job { data: std::ptr::null(), call: noop, mode: 0 }),
    done: AtomicUsize::new(0),
    panicked: AtomicBool::new(false),
};

/// The workers' handles, for unparking; the lock is held for the whole of a split GEMM.
static WORKERS: Mutex<Vec<Thread>> = Mutex::new(Vec::new());

/// The placeholder job before the first one.
unsafe fn noop(_: *const (), _: usize) {}

/// Calls the closure behind `data` on `chunk`.
///
/// # Safety
/// `data` must point at a live `F`.
unsafe fn trampoline<F: Fn(usize) + Sync>(data: *const (), chunk: usize) {
    // SAFETY: forwarded from this function's contract.
    unsafe { (*data.cast::<F>())(chunk) }
}

/// The epoch of a ticket.
fn epoch(ticket: u64) -> u64 {
    ticket >> (2 * FIELD_BITS)
}

/// Claims the next chunk of the job numbered `epoch`, if it is still the current one and has
/// one left.
fn claim(epoch_seen: u64) -> Option<usize> {
    let mut t = SHARED.ticket.load(Ordering::Acquire);
    loop {
        let field = (1u64 << FIELD_BITS) - 1;
        let (chunks, next) = ((t >> FIELD_BITS) & field, t & field);
        if epoch(t) != epoch_seen || next >= chunks {
            return None;
        }
        match SHARED.ticket.compare_exchange_weak(t, t + 1, Ordering::Acquire, Ordering::Acquire) {
            Ok(_) => return Some(next as usize),
            Err(now) => t = now,
        }
    }
}

/// Runs every chunk of the job numbered `epoch_seen` that this thread can claim.
fn run_chunks(epoch_seen: u64) {
    while let Some(chunk) = claim(epoch_seen) {
        // SAFETY: this thread claimed a chunk of the job published with that epoch (Acquired),
        // so `job` holds that job, and its caller keeps it and the closure alive and unchanged
        // until `done` counts this chunk.
        let job = unsafe { *SHARED.job.get() };
        // Flush subnormals or not as the caller does (for the caller itself, one register read).
        fpenv::adopt(job.mode);
        // SAFETY: `job.data` points at the caller's live closure of the type `job.call` expects.
        let run = panic::catch_unwind(AssertUnwindSafe(|| unsafe { (job.call)(job.data, chunk) }));
        if run.is_err() {
            SHARED.panicked.store(true, Ordering::Relaxed);
        }
        SHARED.done.fetch_add(1, Ordering::Release);
    }
}

/// Runs chunks `f(0..chunks)` of a product of `work` multiply-adds: across the pool when there is
/// more than one and a split pays (see [`split_or_serial`]), else one after another on this thread,
/// with the same chunks and so the same scratch sizes as a split run.
pub(super) fn run_parts<F: Fn(usize) + Sync>(work: usize, threads: usize, chunks: usize, f: &F) {
    if chunks > 1 {
        split_or_serial(work, threads, chunks, f, || (0..chunks).for_each(f));
    } else {
        (0..chunks).for_each(f);
    }
}

/// Runs `f(0)`, …, `f(chunks - 1)`, each exactly once, on this thread and on up to
/// `threads - 1` workers, and returns the seconds it took once all have finished; returns `None`
/// without running anything when the pool is busy with another thread's job (or no worker could be
/// started), so the caller does the work itself.
///
/// Chunks are handed out one at a time to whichever thread asks first, the caller included: a
/// worker that is slow to wake (on a loaded machine it may wait for a time slice) only takes
/// fewer chunks, and at worst the caller runs them all.
///
/// After the workers exist (the first call that needs them spawns them), allocates nothing.
///
/// # Panics
/// Re-raises a panic of any chunk, after every chunk has finished.
fn try_run_timed<F: Fn(usize) + Sync>(threads: usize, chunks: usize, f: &F) -> Option<f64> {
    let mut workers = match WORKERS.try_lock() {
        Ok(w) => w,
        // A chunk panicked in an earlier job; the pool itself is still consistent.
        Err(TryLockError::Poisoned(e)) => e.into_inner(),
        Err(TryLockError::WouldBlock) => return None,
    };
    let chunks = chunks.min(MAX_CHUNKS);
    let threads = threads.min(chunks).min(MAX_THREADS);
    let epoch_now = epoch(SHARED.ticket.load(Ordering::Relaxed));
    while workers.len() + 1 < threads {
        match spawn(workers.len(), epoch_now) {
            Some(t) => workers.push(t),
            None => break,
        }
    }
    let helpers = (threads - 1).min(workers.len());
    if helpers == 0 {
        return None;
    }
    let epoch_next = epoch_now + 1;
    // SAFETY: we hold the lock and every chunk of the previous job has finished (its caller
    // waited for them), so nobody reads `job` now.
    unsafe { *SHARED.job.get() = Job { data: (f as *const F).cast(), call: trampoline::<F>, mode: fpenv::mode() } };
    SHARED.panicked.store(false, Ordering::Relaxed);
    SHARED.done.store(0, Ordering::Relaxed);
    SHARED.ticket.store(epoch_next << (2 * FIELD_BITS) | (chunks as u64) << FIELD_BITS, Ordering::Release);
    for w in &workers[..helpers] {
        w.unpark();
    }
    let start = Instant::now();
    run_chunks(epoch_next);
    // Every chunk is claimed now; wait for the ones still running on workers.
    let mut spins = 0u32;
    while SHARED.done.load(Ordering::Acquire) != chunks {
        if spins < 1 << 12 {
            spins += 1;
            std::hint::spin_loop();
        } else {
            // The worker may have been descheduled on a busy machine: give it the core.
            thread::yield_now();
        }
    }
    let total = start.elapsed().as_secs_f64();
    if SHARED.panicked.load(Ordering::Relaxed) {
        panic!("a part of a split GEMM panicked");
    }
    Some(total)
}

/// Starts worker `index`, which has seen jobs up to `epoch`.
fn spawn(index: usize, epoch: u64) -> Option<Thread> {
    let handle = thread::Builder::new().name(format!("modelc-gemm-{}", index + 1)).spawn(move || work(epoch)).ok()?;
    Some(handle.thread().clone())
}

/// A worker's life: wait for each new job and help with its chunks.
fn work(mut seen: u64) -> ! {
    loop {
        seen = wait_for_job(seen);
        run_chunks(seen);
    }
}

/// Spins for [`SPIN`], then parks, until the ticket carries an epoch newer than `seen`; returns
/// that epoch.
fn wait_for_job(seen: u64) -> u64 {
    let start = Instant::now();
    let mut polls = 0u32;
    loop {
        let now = epoch(SHARED.ticket.load(Ordering::Acquire));
        if now != seen {
            return now;
        }
        polls = polls.wrapping_add(1);
        // Reading the clock every 64 polls keeps the spin cheap.
        if polls.is_multiple_of(64) && start.elapsed() > SPIN {
            // An `unpark` between the load above and this call makes `park` return at once.
            thread::park();
        } else {
            std::hint::spin_loop();
        }
    }
}

/// [`try_run_timed`], saying whether it ran.
#[cfg(test)]
fn try_run<F: Fn(usize) + Sync>(threads: usize, chunks: usize, f: &F) -> bool {
    try_run_timed(threads, chunks, f).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn splits_that_do_not_pay_back_off_longer_each_time_until_one_pays() {
        let mut poor = 0;
        let mut skips = Vec::new();
        for _ in 0..12 {
            let (p, s) = backoff_after(poor, false);
            poor = p;
            skips.push(s);
        }
        assert_eq!(skips, [1, 2, 4, 8, 16, 32, 64, 128, 256, 256, 256, 256]);
        assert_eq!(backoff_after(poor, true), (0, 0));
        assert_eq!(backoff_after(0, true), (0, 0));
    }

    #[test]
    fn splits_are_judged_against_products_of_their_size_class() {
        assert_eq!(size_class(1 << 23), 0);
        assert_eq!(size_class(32 * 784 * 512), 0);
        assert_eq!(size_class((1 << 24) - 1), 0);
        assert_eq!(size_class(1 << 24), 1);
        assert_eq!(size_class(256 * 784 * 512), 2);
        assert_eq!(size_class(1 << 30), 3);
        assert_eq!(size_class(usize::MAX), 3);
    }

    #[test]
    fn try_run_runs_every_chunk_once() {
        let hits: Vec<AtomicU32> = (0..7).map(|_| AtomicU32::new(0)).collect();
        for _ in 0..100 {
            let ran = try_run(3, 7, &|i: usize| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            if !ran {
                // Another test's GEMM held the pool: do what the GEMM does then.
                (0..7).for_each(|i| {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                });
            }
        }
        assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 100));
    }

    /// Runs a job of `chunks` chunks until a worker (not this thread) took part, and returns, per
    /// chunk, whether it ran with subnormals flushed and whether a subnormal input read as zero.
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    fn modes_seen(chunks: usize) -> Vec<(bool, bool)> {
        let me = thread::current().id();
        for _ in 0..10_000 {
            let seen: Vec<Mutex<Option<(bool, bool, thread::ThreadId)>>> = (0..chunks).map(|_| Mutex::new(None)).collect();
            let ran = try_run(2, chunks, &|i: usize| {
                let sub = std::hint::black_box(f32::MIN_POSITIVE / 2.0);
                let zeroed = (sub * std::hint::black_box(1.0f32)).to_bits() == 0;
                if let Ok(mut s) = seen[i].lock() {
                    *s = Some((fpenv::flushing_now(), zeroed, thread::current().id()));
                }
            });
            let seen: Vec<_> = seen.into_iter().filter_map(|s| s.into_inner().ok().flatten()).collect();
            if ran && seen.len() == chunks && seen.iter().any(|s| s.2 != me) {
                return seen.into_iter().map(|(f, z, _)| (f, z)).collect();
            }
            // The pool was busy with another test's GEMM, or the worker was not scheduled in time.
            thread::yield_now();
        }
        panic!("no worker took part in 10000 jobs");
    }

    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    #[test]
    fn workers_compute_in_the_callers_floating_point_mode() {
        {
            let _flush = fpenv::FlushDenormals::when(true);
            assert!(modes_seen(8).iter().all(|&m| m == (true, true)));
        }
        // The workers flushed for the last job; without the guard they must stop.
        assert!(modes_seen(8).iter().all(|&m| m == (false, false)));
    }
}
