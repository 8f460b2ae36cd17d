//! Per-thread packing scratch for GEMM, and the 64-byte-aligned `f32` buffer it and the pre-packed
//! weights are kept in: the scratch grows the first time a larger size is asked for and is then
//! reused, so steady-state calls allocate nothing.

use std::cell::RefCell;

/// One cache line of `f32`s; [`Aligned`] is a `Vec` of these so it is 64-byte aligned.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Line([f32; 16]);

/// A growable buffer of `f32`s that starts on a cache line. Packed panels are read one register
/// (32 or 64 bytes) at a time from their start: in a plain `Vec<f32>` (16-byte aligned by the
/// allocator; page + 16 bytes for the large blocks it maps) every other 32-byte load of a 16-wide
/// panel row would straddle two cache lines.
#[derive(Clone, Debug, Default)]
pub(super) struct Aligned(Vec<Line>);

impl Aligned {
    /// Grows the buffer to hold at least `len` values (new ones are zero); never shrinks it.
    pub(super) fn reserve_len(&mut self, len: usize) {
        let lines = len.div_ceil(16);
        if self.0.len() < lines {
            self.0.resize(lines, Line([0.0; 16]));
        }
    }

    /// The first value.
    pub(super) fn as_ptr(&self) -> *const f32 {
        self.0.as_ptr().cast()
    }

    /// The first `len` values, writable, after growing the buffer to hold them.
    pub(super) fn grown(&mut self, len: usize) -> &mut [f32] {
        self.reserve_len(len);
        // SAFETY: `Line` is `repr(C)` around `[f32; 16]`, so the lines just grown to at least
        // `len.div_ceil(16)` are that many times 16 contiguous, initialized `f32`s; the unique
        // borrow is carried over.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast::<f32>(), len) }
    }
}

thread_local! {
    static SCRATCH: RefCell<Aligned> = const { RefCell::new(Aligned(Vec::new())) };
}

/// Runs `f` on a scratch slice of at least `len` values (contents unspecified).
///
/// Uses this thread's buffer, growing it if needed. If that buffer is unavailable (a reentrant
/// call, or during thread teardown) a temporary one is allocated instead, so this never fails.
pub(super) fn with<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    if len == 0 {
        return f(&mut []);
    }
    let mut f = Some(f);
    let got = SCRATCH.try_with(|cell| {
        let mut buf = cell.try_borrow_mut().ok()?;
        let run = f.take()?;
        Some(run(buf.grown(len)))
    });
    match got {
        Ok(Some(r)) => r,
        // Thread-local gone or already borrowed: fall back to a one-off buffer.
        _ => {
            let mut buf = Aligned::default();
            let run = f.take().expect("scratch closure runs at most once");
            run(buf.grown(len))
        }
    }
}

/// Grows this thread's buffer to at least `len` values now, so that a later [`with`] of that size
/// does not allocate. Does nothing if the buffer is unavailable.
pub(super) fn reserve(len: usize) {
    let _ = SCRATCH.try_with(|cell| {
        if let Ok(mut buf) = cell.try_borrow_mut() {
            buf.reserve_len(len);
        }
    });
}
