//! Keras element-wise merges (`Add`, `Subtract`, `Multiply`, `Average`, `Maximum`, `Minimum`),
//! same-shape and numpy-style broadcasting, with their backward.

use super::GradWrite;

/// An element-wise merge of several tensors (Keras layer names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeOp {
    /// x0 + x1 + ...
    Add,
    /// x0 − x1 (exactly two inputs).
    Subtract,
    /// x0 · x1 · ...
    Multiply,
    /// (x0 + x1 + ...) / n.
    Average,
    /// Element-wise maximum; the gradient goes to the first input attaining it.
    Maximum,
    /// Element-wise minimum; the gradient goes to the first input attaining it.
    Minimum,
}

impl MergeOp {
    /// The Keras layer name (`"Add"`, `"Subtract"`, ...).
    pub fn keras_name(&self) -> &'static str {
        match self {
            MergeOp::Add => "Add",
            MergeOp::Subtract => "Subtract",
            MergeOp::Multiply => "Multiply",
            MergeOp::Average => "Average",
            MergeOp::Maximum => "Maximum",
            MergeOp::Minimum => "Minimum",
        }
    }

    /// Folds one more input value `v` into the running value `acc` (Average folds a sum;
    /// Subtract is x0 − x1).
    #[inline(always)]
    fn fold(self, acc: f32, v: f32) -> f32 {
        match self {
            MergeOp::Add | MergeOp::Average => acc + v,
            MergeOp::Subtract => acc - v,
            MergeOp::Multiply => acc * v,
            MergeOp::Maximum => acc.max(v),
            MergeOp::Minimum => acc.min(v),
        }
    }

    /// Whether `v` strictly beats the current extremum `best` (so ties keep the first input).
    #[inline(always)]
    fn beats(self, v: f32, best: f32) -> bool {
        match self {
            MergeOp::Maximum => v > best,
            _ => v < best,
        }
    }
}

/// `y = op(xs[0], xs[1], ...)` element-wise; all inputs and `y` have the same length.
pub fn forward(op: MergeOp, xs: &[&[f32]], y: &mut [f32]) {
    debug_assert!(!xs.is_empty());
    debug_assert!(op != MergeOp::Subtract || xs.len() == 2);
    let Some((first, rest)) = xs.split_first() else {
        return;
    };
    debug_assert_eq!(first.len(), y.len());
    // The first two operands in one pass (a copy of the first, then a pass per operand, cost M4's
    // residual Add twice the memory traffic), the same operations in the same order.
    let Some((second, rest)) = rest.split_first() else {
        y.copy_from_slice(first);
        return;
    };
    debug_assert_eq!(second.len(), y.len());
    let pairs = y.iter_mut().zip(first.iter().zip(*second));
    match op {
        MergeOp::Add | MergeOp::Average => pairs.for_each(|(o, (&a, &b))| *o = a + b),
        MergeOp::Subtract => pairs.for_each(|(o, (&a, &b))| *o = a - b),
        MergeOp::Multiply => pairs.for_each(|(o, (&a, &b))| *o = a * b),
        MergeOp::Maximum => pairs.for_each(|(o, (&a, &b))| *o = a.max(b)),
        MergeOp::Minimum => pairs.for_each(|(o, (&a, &b))| *o = a.min(b)),
    }
    for x in rest {
        debug_assert_eq!(x.len(), y.len());
        match op {
            MergeOp::Add | MergeOp::Average => y.iter_mut().zip(*x).for_each(|(o, &v)| *o += v),
            MergeOp::Subtract => y.iter_mut().zip(*x).for_each(|(o, &v)| *o -= v),
            MergeOp::Multiply => y.iter_mut().zip(*x).for_each(|(o, &v)| *o *= v),
            MergeOp::Maximum => y.iter_mut().zip(*x).for_each(|(o, &v)| *o = o.max(v)),
            MergeOp::Minimum => y.iter_mut().zip(*x).for_each(|(o, &v)| *o = o.min(v)),
        }
    }
    if op == MergeOp::Average {
        let inv = 1.0 / xs.len() as f32;
        y.iter_mut().for_each(|o| *o *= inv);
    }
}

/// `dx += dL/d xs[i]` given dL/dy, for same-shape inputs (`=` when `write` is [`GradWrite::Set`]).
///
/// Multiply uses dy · Π_{j≠i} x_j (no division, so zeros are fine); Maximum and Minimum send the
/// gradient to the first input attaining the extremum.
pub fn backward(op: MergeOp, xs: &[&[f32]], dy: &[f32], i: usize, dx: &mut [f32], write: GradWrite) {
    debug_assert!(i < xs.len());
    debug_assert_eq!(dy.len(), dx.len());
    if write == GradWrite::Set {
        // The linear merges write dx in one pass; the others only add to some elements.
        let scale = match op {
            MergeOp::Add => Some(1.0),
            MergeOp::Subtract => Some(if i == 0 { 1.0 } else { -1.0 }),
            MergeOp::Average => Some(1.0 / xs.len() as f32),
            MergeOp::Multiply | MergeOp::Maximum | MergeOp::Minimum => None,
        };
        match scale {
            Some(s) => dx.iter_mut().zip(dy).for_each(|(g, &d)| *g = s * d),
            None => {
                dx.fill(0.0);
                backward(op, xs, dy, i, dx, GradWrite::Add);
            }
        }
        return;
    }
    match op {
        MergeOp::Add => dx.iter_mut().zip(dy).for_each(|(g, &d)| *g += d),
        MergeOp::Subtract => {
            let sign = if i == 0 { 1.0 } else { -1.0 };
            dx.iter_mut().zip(dy).for_each(|(g, &d)| *g += sign * d);
        }
        MergeOp::Average => {
            let inv = 1.0 / xs.len() as f32;
            dx.iter_mut().zip(dy).for_each(|(g, &d)| *g += inv * d);
        }
        MergeOp::Multiply => {
            for (e, (g, &d)) in dx.iter_mut().zip(dy).enumerate() {
                let others = xs.iter().enumerate().filter(|&(j, _)| j != i).fold(1.0, |p, (_, x)| p * x[e]);
                *g += d * others;
            }
        }
        MergeOp::Maximum | MergeOp::Minimum => {
            for (e, (g, &d)) in dx.iter_mut().zip(dy).enumerate() {
                if first_extremum(op, xs.iter().map(|x| x[e])) == i {
                    *g += d;
                }
            }
        }
    }
}

/// Index of the first value attaining the maximum (or minimum) of `values`.
#[inline(always)]
fn first_extremum(op: MergeOp, mut values: impl Iterator<Item = f32>) -> usize {
    let mut best = values.next().unwrap_or(0.0);
    let mut at = 0;
    for (j, v) in values.enumerate() {
        if op.beats(v, best) {
            best = v;
            at = j + 1;
        }
    }
    at
}

/// Largest rank the broadcasting kernels accept (batch dim included).
const MAX_RANK: usize = 8;

/// Inputs whose row offsets the broadcasting backward caches on the stack.
const MAX_CACHED: usize = 16;

/// Row-major iteration over the output of a broadcast: for each "row" (all output dims but the
/// last), where each input's row starts and its step (0 or 1) along the last dim. No allocation:
/// inputs' offsets are recomputed from the output multi-index when asked.
struct Broadcast<'a> {
    shapes: &'a [&'a [usize]],
    y_shape: &'a [usize],
    /// Length of the last output axis (1 for rank 0).
    cols: usize,
    /// Number of rows: the product of all output dims but the last.
    rows: usize,
}

impl<'a> Broadcast<'a> {
    fn new(shapes: &'a [&'a [usize]], y_shape: &'a [usize]) -> Broadcast<'a> {
        let rank = y_shape.len();
        assert!(rank <= MAX_RANK, "merge: rank {rank} exceeds {MAX_RANK}");
        for s in shapes {
            assert_eq!(s.len(), rank, "merge: input rank differs from the output's");
            for (&d, &n) in s.iter().zip(y_shape) {
                assert!(d == n || d == 1, "merge: dim {d} does not broadcast to {n}");
            }
        }
        let cols = y_shape.last().copied().unwrap_or(1);
        let rows = y_shape[..rank.saturating_sub(1)].iter().product();
        Broadcast { shapes, y_shape, cols, rows }
    }

    /// The output multi-index (all dims but the last) of row `r`.
    fn row_index(&self, mut r: usize, idx: &mut [usize; MAX_RANK]) {
        let lead = self.y_shape.len().saturating_sub(1);
        for d in (0..lead).rev() {
            idx[d] = r % self.y_shape[d];
            r /= self.y_shape[d];
        }
    }

    /// (start, step along the last axis) of input `j` for the row at multi-index `idx`.
    fn input_row(&self, j: usize, idx: &[usize; MAX_RANK]) -> (usize, usize) {
        let s = self.shapes[j];
        let Some((&last, lead)) = s.split_last() else {
            return (0, 0);
        };
        let mut off = 0;
        for (d, &n) in lead.iter().enumerate() {
            off = off * n + if n == 1 { 0 } else { idx[d] };
        }
        (off * last, usize::from(last != 1))
    }
}

/// y = op(xs...) with numpy-style broadcasting: every shape (batch dim included) has the rank of
/// `y_shape`, and each of its dims equals the output's or is 1.
///
/// # Panics
/// When a shape does not broadcast to `y_shape` or the rank exceeds 8.
pub fn forward_broadcast(op: MergeOp, xs: &[&[f32]], shapes: &[&[usize]], y_shape: &[usize], y: &mut [f32]) {
    debug_assert!(!xs.is_empty());
    debug_assert_eq!(xs.len(), shapes.len());
    debug_assert!(op != MergeOp::Subtract || xs.len() == 2);
    let b = Broadcast::new(shapes, y_shape);
    debug_assert_eq!(y.len(), b.rows * b.cols);
    if b.rows * b.cols == 0 {
        return;
    }
    let mut idx = [0; MAX_RANK];
    let inv = 1.0 / xs.len() as f32;
    for r in 0..b.rows {
        let row = &mut y[r * b.cols..(r + 1) * b.cols];
        b.row_index(r, &mut idx);
        for (j, x) in xs.iter().enumerate() {
            let (start, step) = b.input_row(j, &idx);
            let xr = &x[start..start + step * (b.cols - 1) + 1];
            if j == 0 {
                row.iter_mut().enumerate().for_each(|(c, o)| *o = xr[c * step]);
            } else {
                row.iter_mut().enumerate().for_each(|(c, o)| *o = op.fold(*o, xr[c * step]));
            }
        }
        if op == MergeOp::Average {
            row.iter_mut().for_each(|o| *o *= inv);
        }
    }
}

/// `dx += dL/d xs[i]` given dL/dy, with broadcasting: the gradient is summed over every axis along
/// which input `i` was broadcast (onto zeros when `write` is [`GradWrite::Set`]). Shapes as for
/// [`forward_broadcast`].
///
/// # Panics
/// When a shape does not broadcast to `y_shape` or the rank exceeds 8.
#[allow(clippy::too_many_arguments)]
pub fn backward_broadcast(
    op: MergeOp,
    xs: &[&[f32]],
    shapes: &[&[usize]],
    y_shape: &[usize],
    dy: &[f32],
    i: usize,
    dx: &mut [f32],
    write: GradWrite,
) {
    debug_assert!(i < xs.len());
    if write == GradWrite::Set {
        dx.fill(0.0);
    }
    let b = Broadcast::new(shapes, y_shape);
    debug_assert_eq!(dy.len(), b.rows * b.cols);
    debug_assert_eq!(dx.len(), shapes[i].iter().product::<usize>());
    let mut idx = [0; MAX_RANK];
    let n = xs.len();
    // Multiply, Maximum and Minimum read every input: cache each input's row start and step
    // (on the stack, for up to MAX_CACHED inputs; more are recomputed per element).
    let cache = matches!(op, MergeOp::Multiply | MergeOp::Maximum | MergeOp::Minimum);
    let mut rows_of = [(0usize, 0usize); MAX_CACHED];
    for r in 0..b.rows {
        let g = &dy[r * b.cols..(r + 1) * b.cols];
        b.row_index(r, &mut idx);
        let (start, step) = b.input_row(i, &idx);
        if cache {
            for (j, slot) in rows_of.iter_mut().enumerate().take(n) {
                *slot = b.input_row(j, &idx);
            }
        }
        // Input j's value at output column c of this row.
        let value = |j: usize, c: usize| {
            let (s, st) = if j < MAX_CACHED { rows_of[j] } else { b.input_row(j, &idx) };
            xs[j][s + st * c]
        };
        for (c, &d) in g.iter().enumerate() {
            let local = match op {
                MergeOp::Add => d,
                MergeOp::Subtract => {
                    if i == 0 {
                        d
                    } else {
                        -d
                    }
                }
                MergeOp::Average => d / n as f32,
                MergeOp::Multiply => d * (0..n).filter(|&j| j != i).fold(1.0, |p, j| p * value(j, c)),
                MergeOp::Maximum | MergeOp::Minimum => {
                    if first_extremum(op, (0..n).map(|j| value(j, c))) == i {
                        d
                    } else {
                        0.0
                    }
                }
            };
            dx[start + step * c] += local;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::testing::{check_grad, random_vec, weighted_sum};
    use crate::init::Rng;

    const OPS: [MergeOp; 6] = [MergeOp::Add, MergeOp::Subtract, MergeOp::Multiply, MergeOp::Average, MergeOp::Maximum, MergeOp::Minimum];

    /// Reference of one output element from the inputs' values there.
    fn reference(op: MergeOp, v: &[f32]) -> f32 {
        match op {
            MergeOp::Add => v.iter().sum(),
            MergeOp::Subtract => v[0] - v[1],
            MergeOp::Multiply => v.iter().product(),
            MergeOp::Average => v.iter().sum::<f32>() / v.len() as f32,
            MergeOp::Maximum => v.iter().copied().fold(f32::NEG_INFINITY, f32::max),
            MergeOp::Minimum => v.iter().copied().fold(f32::INFINITY, f32::min),
        }
    }

    fn arity(op: MergeOp) -> usize {
        if op == MergeOp::Subtract {
            2
        } else {
            3
        }
    }

    /// Inputs whose values are pairwise at least 0.02 apart, so max/min have no near-ties
    /// within the finite-difference step.
    fn separated_inputs(rng: &mut Rng, n: usize, len: usize) -> Vec<Vec<f32>> {
        let mut xs = vec![vec![0.0; len]; n];
        let mut pool: Vec<f32> = (0..n * len).map(|k| -1.5 + 0.02 * k as f32).collect();
        // Fisher–Yates shuffle.
        for k in (1..pool.len()).rev() {
            let j = (rng.next_u64() % (k as u64 + 1)) as usize;
            pool.swap(k, j);
        }
        for (k, v) in pool.into_iter().enumerate() {
            xs[k % n][k / n] = v;
        }
        xs
    }

    #[test]
    fn keras_names() {
        let names: Vec<&str> = OPS.iter().map(|o| o.keras_name()).collect();
        assert_eq!(names, ["Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"]);
    }

    #[test]
    fn same_shape_forward_matches_reference_and_backward_matches_finite_differences() {
        let mut rng = Rng::new(8);
        let len = 12;
        for op in OPS {
            let xs = separated_inputs(&mut rng, arity(op), len);
            let refs: Vec<&[f32]> = xs.iter().map(|x| &x[..]).collect();
            let mut y = vec![f32::NAN; len];
            forward(op, &refs, &mut y);
            for e in 0..len {
                let v: Vec<f32> = xs.iter().map(|x| x[e]).collect();
                assert!((y[e] - reference(op, &v)).abs() < 1e-6, "{op:?}");
            }
            let r = random_vec(&mut rng, len, -1.0, 1.0);
            for i in 0..xs.len() {
                let mut dx = vec![0.0; len];
                backward(op, &refs, &r, i, &mut dx, GradWrite::Add);
                let loss = |xi: &[f32]| {
                    let mut refs = refs.clone();
                    refs[i] = xi;
                    let mut y = vec![0.0; len];
                    forward(op, &refs, &mut y);
                    weighted_sum(&r, &y)
                };
                check_grad(&format!("{op:?} input {i}"), &xs[i], &dx, 1e-2, loss);
            }
        }
    }

    #[test]
    fn maximum_and_minimum_send_tied_gradients_to_the_first_input() {
        let a = [1.0, 2.0, 3.0];
        let b = [1.0, 5.0, 3.0];
        let c = [1.0, 5.0, 0.0];
        let xs: [&[f32]; 3] = [&a, &b, &c];
        let dy = [1.0, 1.0, 1.0];
        let grads = |op| -> Vec<Vec<f32>> {
            (0..3)
                .map(|i| {
                    let mut dx = vec![0.0; 3];
                    backward(op, &xs, &dy, i, &mut dx, GradWrite::Add);
                    dx
                })
                .collect()
        };
        assert_eq!(grads(MergeOp::Maximum), [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]);
        assert_eq!(grads(MergeOp::Minimum), [[1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]);
    }

    #[test]
    fn multiply_gradient_needs_no_division_by_zero_inputs() {
        let a = [0.0, 2.0];
        let b = [3.0, 0.0];
        let xs: [&[f32]; 2] = [&a, &b];
        let mut da = [0.0; 2];
        backward(MergeOp::Multiply, &xs, &[1.0, 1.0], 0, &mut da, GradWrite::Add);
        assert_eq!(da, [3.0, 0.0]);
        let mut db = [0.0; 2];
        backward(MergeOp::Multiply, &xs, &[1.0, 1.0], 1, &mut db, GradWrite::Add);
        assert_eq!(db, [0.0, 2.0]);
    }

    /// Broadcast reference: output element at multi-index `idx` reads input j at `idx` with its
    /// size-1 dims pinned to 0.
    fn broadcast_reference(op: MergeOp, xs: &[Vec<f32>], shapes: &[Vec<usize>], y_shape: &[usize]) -> Vec<f32> {
        let size: usize = y_shape.iter().product();
        (0..size)
            .map(|flat| {
                let mut idx = vec![0; y_shape.len()];
                let mut rem = flat;
                for d in (0..y_shape.len()).rev() {
                    idx[d] = rem % y_shape[d];
                    rem /= y_shape[d];
                }
                let v: Vec<f32> = xs
                    .iter()
                    .zip(shapes)
                    .map(|(x, s)| {
                        let off = idx.iter().zip(s).fold(0, |acc, (&k, &n)| acc * n + if n == 1 { 0 } else { k });
                        x[off]
                    })
                    .collect();
                reference(op, &v)
            })
            .collect()
    }

    #[test]
    fn broadcast_forward_matches_reference_and_backward_matches_finite_differences() {
        let mut rng = Rng::new(13);
        // (y shape, input shapes); inputs beyond the arity are dropped for Subtract.
        let cases: Vec<(Vec<usize>, Vec<Vec<usize>>)> = vec![
            (vec![3, 4], vec![vec![3, 4], vec![1, 4], vec![3, 1]]),
            (vec![2, 3, 4], vec![vec![2, 1, 4], vec![1, 3, 1], vec![2, 3, 4]]),
            (vec![2, 2, 3, 2, 2], vec![vec![2, 2, 3, 2, 2], vec![1, 2, 1, 2, 1], vec![2, 1, 3, 1, 2]]),
            (vec![2, 5], vec![vec![2, 5], vec![2, 5], vec![2, 5]]),
            (vec![4], vec![vec![1], vec![4], vec![4]]),
        ];
        for (y_shape, all_shapes) in cases {
            for op in OPS {
                let shapes = &all_shapes[..arity(op)];
                let lens: Vec<usize> = shapes.iter().map(|s| s.iter().product()).collect();
                let pool = separated_inputs(&mut rng, 1, lens.iter().sum());
                let mut xs = Vec::new();
                let mut at = 0;
                for &n in &lens {
                    xs.push(pool[0][at..at + n].to_vec());
                    at += n;
                }
                let refs: Vec<&[f32]> = xs.iter().map(|x| &x[..]).collect();
                let srefs: Vec<&[usize]> = shapes.iter().map(|s| &s[..]).collect();
                let want = broadcast_reference(op, &xs, shapes, &y_shape);
                let mut y = vec![f32::NAN; want.len()];
                forward_broadcast(op, &refs, &srefs, &y_shape, &mut y);
                for (a, b) in y.iter().zip(&want) {
                    assert!((a - b).abs() < 1e-6, "{op:?} {y_shape:?}: {a} vs {b}");
                }
                let r = random_vec(&mut rng, want.len(), -1.0, 1.0);
                for i in 0..xs.len() {
                    let mut dx = vec![0.0; xs[i].len()];
                    backward_broadcast(op, &refs, &srefs, &y_shape, &r, i, &mut dx, GradWrite::Add);
                    let loss = |xi: &[f32]| {
                        let mut refs = refs.clone();
                        refs[i] = xi;
                        let mut y = vec![0.0; want.len()];
                        forward_broadcast(op, &refs, &srefs, &y_shape, &mut y);
                        weighted_sum(&r, &y)
                    };
                    let what = format!("{op:?} broadcast {y_shape:?} input {i} {:?}", shapes[i]);
                    check_grad(&what, &xs[i], &dx, 1e-2, loss);
                }
            }
        }
    }

    /// Also: a `Set` write gives the gradient an `Add` gives onto zeros, whatever the buffer held.
    #[test]
    fn broadcast_with_equal_shapes_agrees_with_same_shape_kernels() {
        let mut rng = Rng::new(21);
        let shape = [3usize, 4];
        let xs = separated_inputs(&mut rng, 3, 12);
        let refs: Vec<&[f32]> = xs.iter().map(|x| &x[..]).collect();
        let srefs: Vec<&[usize]> = vec![&shape; 3];
        let dy = random_vec(&mut rng, 12, -1.0, 1.0);
        for op in OPS {
            let n = arity(op);
            let (mut y1, mut y2) = (vec![0.0; 12], vec![0.0; 12]);
            forward(op, &refs[..n], &mut y1);
            forward_broadcast(op, &refs[..n], &srefs[..n], &shape, &mut y2);
            assert_eq!(y1, y2, "{op:?}");
            for i in 0..n {
                let (mut g1, mut g2) = (vec![0.5; 12], vec![0.5; 12]);
                backward(op, &refs[..n], &dy, i, &mut g1, GradWrite::Add);
                backward_broadcast(op, &refs[..n], &srefs[..n], &shape, &dy, i, &mut g2, GradWrite::Add);
                for (a, b) in g1.iter().zip(&g2) {
                    assert!((a - b).abs() < 1e-6, "{op:?} input {i}");
                }
                let mut want = vec![0.0; 12];
                backward(op, &refs[..n], &dy, i, &mut want, GradWrite::Add);
                let (mut s1, mut s2) = (vec![f32::NAN; 12], vec![f32::NAN; 12]);
                backward(op, &refs[..n], &dy, i, &mut s1, GradWrite::Set);
                backward_broadcast(op, &refs[..n], &srefs[..n], &shape, &dy, i, &mut s2, GradWrite::Set);
                assert_eq!(s1, want, "{op:?} input {i}: set");
                assert!(s2.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6), "{op:?} broadcast input {i}: set");
            }
        }
    }
}
