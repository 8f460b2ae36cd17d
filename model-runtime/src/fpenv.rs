//! The floating-point mode the runtime computes in: subnormal numbers flushed to zero.
//!
//! A subnormal (denormal) `f32` is a value below `f32::MIN_POSITIVE` (about 1.2e-38) in magnitude.
//! Many CPUs handle them in microcode, tens to hundreds of times slower than a normal operation,
//! and training produces them: gradients that vanish and Adam's moments that decay toward zero
//! make a step several times slower once a trainer has aged, with no change to its results worth
//! having. So, like TensorFlow and JAX on CPU, modelc computes with subnormals flushed to zero:
//!
//! - on x86_64, the MXCSR bits FTZ (bit 15: a subnormal result becomes zero) and DAZ (bit 6: a
//!   subnormal input is read as zero);
//! - on aarch64, the FPCR bit FZ (bit 24: both);
//! - elsewhere nothing is changed.
//!
//! The mode is set by a [`FlushDenormals`] guard, which every public entry point of the runtime
//! that computes (prediction, `forward`, `backward`, `train_step`, `fit`, `evaluate`) enters on
//! the calling thread, and which restores the caller's mode when it returns. The GEMM's worker
//! threads compute each product in the mode of the thread that asked for it. The caller's own
//! code therefore never runs in a mode it did not choose.
//!
//! Results then match TensorFlow's and JAX's CPU results, which flush too: a value that would be
//! subnormal is zero. Keras on TensorFlow and JAX both do so; PyTorch does not by default
//! (`torch.set_flush_denormal(True)` opts in). [`set_flush_denormals`]`(false)` or the environment
//! variable `MODELC_FLUSH_DENORMALS=0` turn flushing off, for gradual underflow as IEEE 754
//! specifies it, at the cost of the slow steps.
//!
//! The compiler folds constant expressions assuming the default mode, so only values computed at
//! run time are flushed; the runtime's kernels compute everything from data at run time.

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU8, Ordering};

/// The environment variable read (once, at the first guard) for the default: `0`, `false`, `off`
/// or `no` turn flushing off; anything else, or unset, leaves it on.
pub const FLUSH_DENORMALS_ENV: &str = "MODELC_FLUSH_DENORMALS";

/// The setting: [`UNSET`] until first read or set, then [`OFF`] or [`ON`].
static SETTING: AtomicU8 = AtomicU8::new(UNSET);
const UNSET: u8 = 0;
const OFF: u8 = 1;
const ON: u8 = 2;

/// Sets whether the runtime computes with subnormals flushed to zero (the default: on), from now
/// on, for the whole process. Takes precedence over `MODELC_FLUSH_DENORMALS`.
///
/// With `false`, results keep their subnormals (gradual underflow, as IEEE 754 specifies), and a
/// trainer whose gradients or optimizer moments have decayed to subnormals may run several
/// times slower on CPUs that handle them in microcode.
pub fn set_flush_denormals(on: bool) {
    SETTING.store(if on { ON } else { OFF }, Ordering::Relaxed);
}

/// Whether the runtime computes with subnormals flushed to zero: the last
/// [`set_flush_denormals`], else `MODELC_FLUSH_DENORMALS`, else `true`.
#[inline]
pub fn flush_denormals() -> bool {
    match SETTING.load(Ordering::Relaxed) {
        UNSET => first_setting(),
        s => s == ON,
    }
}

/// [`flush_denormals`] on its first call: settles the default from the environment.
#[cold]
fn first_setting() -> bool {
    let on = std::env::var(FLUSH_DENORMALS_ENV).map_or(true, |v| env_allows(&v));
    // A concurrent `set_flush_denormals` wins over the environment.
    let _ = SETTING.compare_exchange(UNSET, if on { ON } else { OFF }, Ordering::Relaxed, Ordering::Relaxed);
    SETTING.load(Ordering::Relaxed) == ON
}

/// Whether the value of `MODELC_FLUSH_DENORMALS` leaves flushing on.
fn env_allows(value: &str) -> bool {
    !matches!(value.trim().to_ascii_lowercase().as_str(), "0" | "false" | "off" | "no")
}

thread_local! {
    /// Whether a guard on this thread has set the flush mode and not restored it yet: guards made
    /// meanwhile know the mode is set without reading the register.
    static HELD: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread currently flushes subnormals to zero (always `false` on architectures
/// where the runtime does not set the mode).
#[inline]
pub fn flushing_now() -> bool {
    arch::FLUSH != 0 && arch::read() & arch::FLUSH == arch::FLUSH
}

/// Computes with subnormals flushed to zero on this thread while it lives (when
/// [`flush_denormals`] is on), and restores the thread's previous mode when dropped.
///
/// Entering costs one read of the control register; setting the mode (when it was not set
/// already: nested guards leave it alone) and restoring it cost one write each. Measured on a
/// Zen 4 core (`cargo bench --bench subnormal -- guard`): about 19 ns for a guard that sets and
/// restores the mode, about 1 ns for one nested in it, under 1 ns with flushing off; about 2% of
/// an M1 training step at batch 1 and up to 9% of an M1 prediction at batch 1 (about 0.2 µs). A
/// caller making many such tiny calls can hold a guard around its loop, so that each call's own
/// guard finds the mode set and costs next to nothing.
///
/// While a guard that set the mode is held, guards made on the same thread trust it and do not
/// read the register: code that changes the mode by other means meanwhile is not noticed.
///
/// The guard belongs to the thread that made it, so it is neither `Send` nor `Sync`.
#[must_use = "the mode is restored when the guard is dropped"]
pub struct FlushDenormals {
    /// The control register before the guard changed it, if it did.
    restore: Option<arch::Word>,
    _thread: PhantomData<*const ()>,
}

impl FlushDenormals {
    /// Flushes subnormals on this thread until the guard is dropped, unless
    /// [`set_flush_denormals`]`(false)` (or `MODELC_FLUSH_DENORMALS=0`) turned flushing off.
    #[inline]
    pub fn new() -> Self {
        Self::when(flush_denormals())
    }

    /// Flushes subnormals on this thread until the guard is dropped if `on`; does nothing else.
    #[inline]
    pub fn when(on: bool) -> Self {
        let mut restore = None;
        if on && arch::FLUSH != 0 && !HELD.with(Cell::get) {
            let now = arch::read();
            if now & arch::FLUSH != arch::FLUSH {
                // SAFETY: only the flush bits change; the runtime's code is correct in either mode.
                unsafe { arch::write(now | arch::FLUSH) };
                restore = Some(now);
                HELD.with(|h| h.set(true));
            }
        }
        FlushDenormals { restore, _thread: PhantomData }
    }
}

impl Default for FlushDenormals {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for FlushDenormals {
    #[inline]
    fn drop(&mut self) {
        if let Some(saved) = self.restore {
            // The status flags raised meanwhile stay raised; the control bits go back.
            let now = arch::read();
            // SAFETY: restores the mode the thread had when the guard was made.
            unsafe { arch::write((now & !arch::CONTROL) | (saved & arch::CONTROL)) };
            HELD.with(|h| h.set(false));
        }
    }
}

/// The control bits of this thread's floating-point mode, to hand to another thread with
/// [`adopt`] (the GEMM's workers compute in the mode of the thread whose product they run).
#[inline]
pub(crate) fn mode() -> arch::Word {
    arch::read() & arch::CONTROL
}

/// Switches this thread to the control bits `mode` (from [`mode`]) unless it is in that mode
/// already, and keeps them: for threads that run only the runtime's own jobs.
#[inline]
pub(crate) fn adopt(mode: arch::Word) {
    let now = arch::read();
    if now & arch::CONTROL != mode {
        // SAFETY: the mode is one another thread of this process computes in.
        unsafe { arch::write((now & !arch::CONTROL) | mode) };
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod arch {
    //! MXCSR through `stmxcsr` / `ldmxcsr` (the `_mm_getcsr` / `_mm_setcsr` intrinsics are
    //! deprecated in favour of inline assembly).
    use std::arch::asm;

    /// The register's width.
    pub type Word = u32;
    /// FTZ (bit 15) and DAZ (bit 6).
    pub const FLUSH: Word = (1 << 15) | (1 << 6);
    /// The mode bits (6..16: DAZ, exception masks, rounding, FTZ), not the sticky status flags.
    pub const CONTROL: Word = 0xffc0;

    /// MXCSR.
    #[inline]
    pub fn read() -> Word {
        let mut csr: Word = 0;
        // SAFETY: stores 4 bytes into `csr`, which is writable.
        unsafe { asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack, preserves_flags)) };
        csr
    }

    /// Sets MXCSR to `csr`.
    ///
    /// # Safety
    /// `csr` must keep the reserved bits clear and not unmask exceptions.
    #[inline]
    pub unsafe fn write(csr: Word) {
        // SAFETY: forwarded from this function's contract; reads 4 bytes from `csr`.
        unsafe { asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, preserves_flags, readonly)) };
    }
}

#[cfg(target_arch = "aarch64")]
pub(crate) mod arch {
    //! FPCR through `mrs` / `msr`.
    use std::arch::asm;

    /// The register's width.
    pub type Word = u64;
    /// FZ (bit 24).
    pub const FLUSH: Word = 1 << 24;
    /// The whole register is control; the status flags live in FPSR.
    pub const CONTROL: Word = !0;

    /// FPCR.
    #[inline]
    pub fn read() -> Word {
        let fpcr: Word;
        // SAFETY: reads a register.
        unsafe { asm!("mrs {}, fpcr", out(reg) fpcr, options(nomem, nostack, preserves_flags)) };
        fpcr
    }

    /// Sets FPCR to `fpcr`.
    ///
    /// # Safety
    /// `fpcr` must keep the reserved bits as read and not enable traps.
    #[inline]
    pub unsafe fn write(fpcr: Word) {
        // SAFETY: forwarded from this function's contract.
        unsafe { asm!("msr fpcr, {}", in(reg) fpcr, options(nostack, preserves_flags)) };
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub(crate) mod arch {
    //! No mode is set on other architectures.

    /// A placeholder width.
    pub type Word = u32;
    /// No bit: guards do nothing.
    pub const FLUSH: Word = 0;
    /// No bit.
    pub const CONTROL: Word = 0;

    /// Nothing to read.
    #[inline]
    pub fn read() -> Word {
        0
    }

    /// Nothing to write.
    ///
    /// # Safety
    /// Always safe; `unsafe` to match the other architectures.
    #[inline]
    pub unsafe fn write(_: Word) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hint::black_box;

    /// The smallest positive normal `f32` halved: a subnormal.
    const SUB: f32 = f32::MIN_POSITIVE / 2.0;

    #[test]
    fn env_values_that_turn_flushing_off() {
        for off in ["0", "false", "OFF", " no "] {
            assert!(!env_allows(off), "{off:?}");
        }
        for on in ["1", "true", "on", ""] {
            assert!(env_allows(on), "{on:?}");
        }
    }

    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    #[test]
    fn guard_flushes_subnormal_inputs_and_results_then_restores_the_mode() {
        assert!(SUB != 0.0 && SUB.is_subnormal());
        let before = arch::read() & arch::CONTROL;
        assert!(!flushing_now(), "test threads start in the default mode");
        // Gradual underflow outside the guard.
        assert_eq!(black_box(SUB) * black_box(1.0f32), SUB);
        assert!((black_box(1e-30f32) * black_box(1e-10f32)).is_subnormal());
        {
            let _g = FlushDenormals::when(true);
            assert!(flushing_now());
            // A subnormal input reads as zero, and a subnormal result becomes zero.
            assert_eq!((black_box(SUB) * black_box(1.0f32)).to_bits(), 0);
            assert_eq!((black_box(1e-30f32) * black_box(1e-10f32)).to_bits(), 0);
            assert_eq!((black_box(SUB) + black_box(SUB)).to_bits(), 0);
            {
                // A nested guard leaves the mode alone, and so does its drop.
                let _inner = FlushDenormals::when(true);
                assert!(flushing_now());
            }
            assert!(flushing_now());
        }
        assert!(!flushing_now());
        assert_eq!(arch::read() & arch::CONTROL, before);
        assert_eq!(black_box(SUB) * black_box(1.0f32), SUB);
        // The next guard sets the mode again: the first one's drop forgot it had set it.
        {
            let _again = FlushDenormals::when(true);
            assert!(flushing_now());
        }
        assert!(!flushing_now());
    }

    #[test]
    fn a_guard_that_is_off_changes_nothing() {
        let before = arch::read() & arch::CONTROL;
        {
            let _g = FlushDenormals::when(false);
            assert!(!flushing_now());
            assert_eq!(black_box(SUB) * black_box(1.0f32), SUB);
        }
        assert_eq!(arch::read() & arch::CONTROL, before);
    }

    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    #[test]
    fn adopt_copies_another_threads_mode() {
        let flushing = {
            let _g = FlushDenormals::when(true);
            mode()
        };
        let other = std::thread::spawn(move || {
            adopt(flushing);
            let inside = flushing_now() && (black_box(SUB) * black_box(1.0f32)).to_bits() == 0;
            adopt(flushing & !arch::FLUSH);
            (inside, flushing_now())
        });
        assert_eq!(other.join().ok(), Some((true, false)));
    }
}
