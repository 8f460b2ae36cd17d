//! Per-thread packing scratch for GEMM: a 64-byte-aligned `f32` buffer that grows the first time
//! a larger size is asked for and is then reused, so steady-state calls allocate nothing.

use std::cell::RefCell;

/// One cache line of `f32`s; the buffer is a `Vec` of these so it is 64-byte aligned.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; 16]);

thread_local! {
    static SCRATCH: RefCell<Vec<Line>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on a scratch slice of at least `len` values (contents unspecified).
///
/// Uses this thread's buffer, growing it if needed. If that buffer is unavailable (a reentrant
/// call, or during thread teardown) a temporary one is allocated instead, so this never fails.
pub(super) fn with<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    if len == 0 {
        return f(&mut []);
    }
    let lines = len.div_ceil(16);
    let mut f = Some(f);
    let got = SCRATCH.try_with(|cell| {
        let mut buf = cell.try_borrow_mut().ok()?;
        if buf.len() < lines {
            buf.resize(lines, Line([0.0; 16]));
        }
        let run = f.take()?;
        Some(run(as_f32(&mut buf[..lines], len)))
    });
    match got {
        Ok(Some(r)) => r,
        // Thread-local gone or already borrowed: fall back to a one-off buffer.
        _ => {
            let mut buf = vec![Line([0.0; 16]); lines];
            let run = f.take().expect("scratch closure runs at most once");
            run(as_f32(&mut buf, len))
        }
    }
}

/// Grows this thread's buffer to at least `len` values now, so that a later [`with`] of that size
/// does not allocate. Does nothing if the buffer is unavailable.
pub(super) fn reserve(len: usize) {
    let _ = SCRATCH.try_with(|cell| {
        if let Ok(mut buf) = cell.try_borrow_mut() {
            let lines = len.div_ceil(16);
            if buf.len() < lines {
                buf.resize(lines, Line([0.0; 16]));
            }
        }
    });
}

/// The first `len` `f32`s of `lines`.
fn as_f32(lines: &mut [Line], len: usize) -> &mut [f32] {
    debug_assert!(len <= lines.len() * 16);
    // SAFETY: `Line` is `repr(C)` around `[f32; 16]`, so `lines` is `lines.len() * 16` contiguous,
    // initialized `f32`s, and `len` does not exceed that; the borrow is carried over.
    unsafe { std::slice::from_raw_parts_mut(lines.as_mut_ptr().cast::<f32>(), len) }
}
