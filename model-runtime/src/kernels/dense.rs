//! Keras `Dense`: y = act(x·W + b) with the kernel W laid out `[in, out]`, and its backward.

use super::activation::{self, Activation};
use super::gemm::{sgemm, sgemm_blocks, sgemm_prepacked, Epilogue, PackCache};
use super::GradWrite;

/// y = act(x·W + b) for `rows` rows: `x` is rows×fin, `w` fin×fout (Keras layout), `b` fout,
/// `y` rows×fout.
///
/// One GEMM into `y` whose stores add the bias and, for relu, clamp (the GEMM's epilogue); any
/// other activation is one more pass over `y` (softmax over each row of `fout`). When `pre` is
/// given (the activation [`Activation::needs_input`]), the pre-activation z = x·W + b is stored
/// there too. Allocates nothing.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    act: Activation,
    pre: Option<&mut [f32]>,
    y: &mut [f32],
    rows: usize,
    fin: usize,
    fout: usize,
) {
    forward_parts(&[x], &[fin], w, b, act, pre, y, rows, fout);
}

/// [`forward`] in the inference forward, where nothing keeps the pre-activation and the kernel `w`
/// is the same from call to call while the parameters' generation in `packed` stays the same: the
/// kernel is packed for the GEMM into `packed` once and read there by the next calls
/// ([`sgemm_prepacked`]; the results are [`forward`]'s bits). Allocates nothing once `packed` holds
/// this kernel.
#[allow(clippy::too_many_arguments)]
pub fn forward_inference(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    act: Activation,
    y: &mut [f32],
    rows: usize,
    fin: usize,
    fout: usize,
    packed: &mut PackCache,
) {
    debug_assert_eq!(w.len(), fin * fout);
    debug_assert_eq!(y.len(), rows * fout);
    let relu = matches!(act, Activation::Relu);
    sgemm_prepacked(rows, fin, fout, x, w, y, Epilogue { bias: b, relu }, packed);
    if !relu && !matches!(act, Activation::Linear) {
        activation::bias_forward_inplace(act, None, None, y, fout);
    }
}

/// [`forward`] on the concatenation of row blocks `xs` along the last axis, without building it:
/// `xs[i]` is rows×`fins[i]`, `w` is (Σ fins)×fout, and x·W = Σᵢ xᵢ·Wᵢ where Wᵢ are the matching
/// row blocks of W ([`sgemm_blocks`]; the bias and relu are applied as it stores). Allocates
/// nothing.
#[allow(clippy::too_many_arguments)]
pub fn forward_parts(
    xs: &[&[f32]],
    fins: &[usize],
    w: &[f32],
    b: Option<&[f32]>,
    act: Activation,
    pre: Option<&mut [f32]>,
    y: &mut [f32],
    rows: usize,
    fout: usize,
) {
    debug_assert_eq!(xs.len(), fins.len());
    debug_assert_eq!(w.len(), fins.iter().sum::<usize>() * fout);
    debug_assert_eq!(y.len(), rows * fout);
    // Relu can be applied as the GEMM stores only when nothing needs the pre-activation.
    let relu = matches!(act, Activation::Relu) && pre.is_none();
    sgemm_blocks(rows, fout, xs, fins, w, y, Epilogue { bias: b, relu });
    if !relu && !matches!(act, Activation::Linear) {
        activation::bias_forward_inplace(act, None, pre, y, fout);
    }
}

/// The backward of [`forward`]. `dy` (dL/dy, rows×fout) is overwritten with dL/dz through the
/// activation; then dw += xᵀ·dz, db += Σ_rows dz and dx += dz·Wᵀ (skipped when `dx` is `None`), each
/// `=` instead of `+=` where `writes` says [`GradWrite::Set`].
///
/// `pre` is the stored pre-activation, required when `act` [`Activation::needs_input`]; `y` is
/// the forward output. Transposes are GEMM flags, not copies. Allocates nothing.
///
/// # Panics
/// When `pre` is `None` for an activation that needs it.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    x: &[f32],
    w: &[f32],
    pre: Option<&[f32]>,
    y: &[f32],
    dy: &mut [f32],
    act: Activation,
    dx: Option<&mut [f32]>,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
    rows: usize,
    fin: usize,
    fout: usize,
    writes: Writes,
) {
    backward_output(act, pre, y, dy, db, fout, writes.params);
    backward_input(x, w, dy, dx, dw, rows, fin, fout, writes);
}

/// How [`backward`] writes its gradients: the input's, and the parameters' (kernel and bias).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Writes {
    /// dx.
    pub dx: GradWrite,
    /// dw and db.
    pub params: GradWrite,
}

impl Writes {
    /// Every gradient added onto its buffer.
    pub const ADD: Writes = Writes { dx: GradWrite::Add, params: GradWrite::Add };
}

/// The part of [`backward`] on the output side: `dy` is overwritten with dL/dz through the
/// activation, and db += Σ_rows dz (`=` when `db_write` is [`GradWrite::Set`]).
///
/// # Panics
/// When `pre` is `None` for an activation that needs it.
pub fn backward_output(
    act: Activation,
    pre: Option<&[f32]>,
    y: &[f32],
    dy: &mut [f32],
    db: Option<&mut [f32]>,
    fout: usize,
    db_write: GradWrite,
) {
    activation::backward(act, pre, y, dy, fout);
    if let Some(db) = db {
        debug_assert_eq!(db.len(), fout);
        if db_write == GradWrite::Set {
            db.fill(0.0);
        }
        if fout > 0 {
            for row in dy.chunks_exact(fout) {
                db.iter_mut().zip(row).for_each(|(g, &d)| *g += d);
            }
        }
    }
}

/// The part of [`backward`] for one input block (all of x, or one block of [`forward_parts`] with
/// its rows of W): dw += xᵀ·dz and dx += dz·Wᵀ (skipped when `dx` is `None`), `=` where `writes`
/// says [`GradWrite::Set`] (the GEMM's beta is 0 then).
#[allow(clippy::too_many_arguments)]
pub fn backward_input(
    x: &[f32],
    w: &[f32],
    dz: &[f32],
    dx: Option<&mut [f32]>,
    dw: &mut [f32],
    rows: usize,
    fin: usize,
    fout: usize,
    writes: Writes,
) {
    debug_assert_eq!(x.len(), rows * fin);
    debug_assert_eq!(w.len(), fin * fout);
    debug_assert_eq!(dz.len(), rows * fout);
    debug_assert_eq!(dw.len(), fin * fout);
    // dw (fin×fout) += xᵀ (fin×rows, x stored rows×fin) · dz (rows×fout).
    sgemm(fin, rows, fout, 1.0, x, true, dz, false, writes.params.beta(), dw);
    if let Some(dx) = dx {
        debug_assert_eq!(dx.len(), rows * fin);
        // dx (rows×fin) += dz (rows×fout) · Wᵀ (fout×fin, W stored fin×fout).
        sgemm(rows, fout, fin, 1.0, dz, false, w, true, writes.dx.beta(), dx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::testing::{check_grad, random_vec, weighted_sum};
    use crate::init::Rng;

    fn acts() -> Vec<Activation> {
        Activation::all_keras_names()
            .iter()
            .filter_map(|n| Activation::from_keras_name(n))
            .chain([Activation::Gelu { approximate: true }])
            .collect()
    }

    /// Runs forward into fresh buffers, returning (y, pre).
    fn run(x: &[f32], w: &[f32], b: Option<&[f32]>, act: Activation, dims: (usize, usize, usize)) -> (Vec<f32>, Vec<f32>) {
        let (rows, fin, fout) = dims;
        let mut y = vec![f32::NAN; rows * fout];
        let mut pre = vec![0.0; rows * fout];
        let p = act.needs_input().then_some(&mut pre[..]);
        forward(x, w, b, act, p, &mut y, rows, fin, fout);
        (y, pre)
    }

    #[test]
    fn forward_matches_naive_matmul_bias_and_activation() {
        let mut rng = Rng::new(1);
        for &(rows, fin, fout) in &[(1, 3, 4), (5, 7, 3), (4, 2, 1)] {
            let x = random_vec(&mut rng, rows * fin, -1.0, 1.0);
            let w = random_vec(&mut rng, fin * fout, -1.0, 1.0);
            let b = random_vec(&mut rng, fout, -1.0, 1.0);
            for act in acts() {
                for bias in [Some(&b[..]), None] {
                    let mut z = vec![0.0f32; rows * fout];
                    for r in 0..rows {
                        for o in 0..fout {
                            let mut s = bias.map_or(0.0, |b| b[o] as f64);
                            for i in 0..fin {
                                s += x[r * fin + i] as f64 * w[i * fout + o] as f64;
                            }
                            z[r * fout + o] = s as f32;
                        }
                    }
                    let mut want = vec![0.0; z.len()];
                    activation::forward(act, &z, &mut want, fout);
                    let (y, pre) = run(&x, &w, bias, act, (rows, fin, fout));
                    for i in 0..y.len() {
                        assert!((y[i] - want[i]).abs() < 1e-5, "{act:?}: {} vs {}", y[i], want[i]);
                        if act.needs_input() {
                            assert!((pre[i] - z[i]).abs() < 1e-5, "{act:?} pre");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn backward_matches_finite_differences_for_dx_dw_db_and_every_activation() {
        let mut rng = Rng::new(2);
        let (rows, fin, fout) = (3, 4, 5);
        let dims = (rows, fin, fout);
        for act in acts() {
            let x = random_vec(&mut rng, rows * fin, -1.0, 1.0);
            let w = random_vec(&mut rng, fin * fout, -1.0, 1.0);
            let b = random_vec(&mut rng, fout, -0.5, 0.5);
            let r = random_vec(&mut rng, rows * fout, -1.0, 1.0);
            let (y, pre) = run(&x, &w, Some(&b), act, dims);
            // Start from non-zero gradients to check accumulation.
            let (dx0, dw0, db0) = (vec![0.5; x.len()], vec![-0.25; w.len()], vec![1.0; fout]);
            let (mut dx, mut dw, mut db) = (dx0.clone(), dw0.clone(), db0.clone());
            let mut dy = r.clone();
            let p = act.needs_input().then_some(&pre[..]);
            backward(&x, &w, p, &y, &mut dy, act, Some(&mut dx), &mut dw, Some(&mut db), rows, fin, fout, Writes::ADD);
            let minus = |g: &[f32], g0: &[f32]| -> Vec<f32> { g.iter().zip(g0).map(|(a, b)| a - b).collect() };
            let loss = |x: &[f32], w: &[f32], b: &[f32]| weighted_sum(&r, &run(x, w, Some(b), act, dims).0);
            // The kinks of relu and leaky_relu are met with probability 0 by random inputs.
            check_grad(&format!("dense {act:?} dx"), &x, &minus(&dx, &dx0), 1e-2, |x| loss(x, &w, &b));
            check_grad(&format!("dense {act:?} dw"), &w, &minus(&dw, &dw0), 1e-2, |w| loss(&x, w, &b));
            check_grad(&format!("dense {act:?} db"), &b, &minus(&db, &db0), 1e-2, |b| loss(&x, &w, b));
        }
    }

    #[test]
    fn parts_match_dense_on_the_concatenated_input_forward_and_backward() {
        let mut rng = Rng::new(5);
        let (rows, fins, fout) = (7, [3usize, 0, 5, 2], 6);
        let fin: usize = fins.iter().sum();
        let xs: Vec<Vec<f32>> = fins.iter().map(|&f| random_vec(&mut rng, rows * f, -1.0, 1.0)).collect();
        // The concatenation along the last axis, row by row.
        let x: Vec<f32> = (0..rows).flat_map(|r| xs.iter().zip(&fins).flat_map(move |(x, &f)| x[r * f..(r + 1) * f].to_vec())).collect();
        let w = random_vec(&mut rng, fin * fout, -1.0, 1.0);
        let b = random_vec(&mut rng, fout, -1.0, 1.0);
        let r = random_vec(&mut rng, rows * fout, -1.0, 1.0);
        for act in acts() {
            let (want, want_pre) = run(&x, &w, Some(&b), act, (rows, fin, fout));
            let mut y = vec![f32::NAN; rows * fout];
            let mut pre = vec![0.0; rows * fout];
            let views: Vec<&[f32]> = xs.iter().map(Vec::as_slice).collect();
            forward_parts(&views, &fins, &w, Some(&b), act, act.needs_input().then_some(&mut pre[..]), &mut y, rows, fout);
            for i in 0..y.len() {
                assert!((y[i] - want[i]).abs() < 1e-5, "{act:?}: {} vs {}", y[i], want[i]);
                assert!(!act.needs_input() || (pre[i] - want_pre[i]).abs() < 1e-5, "{act:?} pre");
            }
            // Backward in parts: one output pass, one input pass per block, against the whole.
            let p = act.needs_input().then_some(&want_pre[..]);
            let (mut dx, mut dw, mut db, mut dy) = (vec![0.5; x.len()], vec![0.25; w.len()], vec![1.0; fout], r.clone());
            backward(&x, &w, p, &want, &mut dy, act, Some(&mut dx), &mut dw, Some(&mut db), rows, fin, fout, Writes::ADD);
            let (mut pdw, mut pdb, mut pdy) = (vec![0.25; w.len()], vec![1.0; fout], r.clone());
            backward_output(act, p, &want, &mut pdy, Some(&mut pdb), fout, GradWrite::Add);
            let mut row0 = 0;
            for (i, (xi, &f)) in xs.iter().zip(&fins).enumerate() {
                let mut pdx = vec![0.5; rows * f];
                let wi = &w[row0 * fout..(row0 + f) * fout];
                backward_input(xi, wi, &pdy, Some(&mut pdx), &mut pdw[row0 * fout..(row0 + f) * fout], rows, f, fout, Writes::ADD);
                for rr in 0..rows {
                    for c in 0..f {
                        let (got, want) = (pdx[rr * f + c], dx[rr * fin + row0 + c]);
                        assert!((got - want).abs() < 1e-5, "{act:?} part {i} dx: {got} vs {want}");
                    }
                }
                row0 += f;
            }
            assert!(pdw.iter().zip(&dw).all(|(a, b)| (a - b).abs() < 1e-5), "{act:?} dw");
            assert!(pdb.iter().zip(&db).all(|(a, b)| (a - b).abs() < 1e-5), "{act:?} db");
        }
    }

    #[test]
    fn set_writes_overwrite_stale_gradients_and_add_writes_accumulate() {
        let mut rng = Rng::new(5);
        let (rows, fin, fout) = (4, 3, 5);
        let act = Activation::Tanh;
        let x = random_vec(&mut rng, rows * fin, -1.0, 1.0);
        let w = random_vec(&mut rng, fin * fout, -1.0, 1.0);
        let (y, _) = run(&x, &w, None, act, (rows, fin, fout));
        let r = random_vec(&mut rng, rows * fout, -1.0, 1.0);
        // Onto zeros, adding: the reference.
        let (mut dx, mut dw, mut db, mut dy) = (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; fout], r.clone());
        backward(&x, &w, None, &y, &mut dy, act, Some(&mut dx), &mut dw, Some(&mut db), rows, fin, fout, Writes::ADD);
        // Over stale values (NaN included), setting: the same values.
        let (mut sx, mut sw, mut sb, mut dy) = (vec![f32::NAN; x.len()], vec![7.0; w.len()], vec![f32::NAN; fout], r.clone());
        let set = Writes { dx: GradWrite::Set, params: GradWrite::Set };
        backward(&x, &w, None, &y, &mut dy, act, Some(&mut sx), &mut sw, Some(&mut sb), rows, fin, fout, set);
        assert_eq!((&sx, &sw, &sb), (&dx, &dw, &db));
        // Each write on its own: setting dx but adding the parameters' gradients onto theirs.
        let (mut sx, mut aw, mut ab, mut dy) = (vec![f32::NAN; x.len()], dw.clone(), db.clone(), r.clone());
        let mixed = Writes { dx: GradWrite::Set, params: GradWrite::Add };
        backward(&x, &w, None, &y, &mut dy, act, Some(&mut sx), &mut aw, Some(&mut ab), rows, fin, fout, mixed);
        assert_eq!(sx, dx);
        assert!(aw.iter().zip(&dw).all(|(a, d)| (a - 2.0 * d).abs() <= 1e-6 * (1.0 + d.abs())), "dw added");
        assert!(ab.iter().zip(&db).all(|(a, d)| (a - 2.0 * d).abs() <= 1e-6 * (1.0 + d.abs())), "db added");
    }

    #[test]
    fn backward_without_dx_and_db_still_accumulates_dw() {
        let mut rng = Rng::new(3);
        let (rows, fin, fout) = (2, 3, 2);
        let x = random_vec(&mut rng, rows * fin, -1.0, 1.0);
        let w = random_vec(&mut rng, fin * fout, -1.0, 1.0);
        let (y, _) = run(&x, &w, None, Activation::Linear, (rows, fin, fout));
        let dy0 = random_vec(&mut rng, rows * fout, -1.0, 1.0);
        let mut dy = dy0.clone();
        let mut dw = vec![0.0; w.len()];
        let lin = Activation::Linear;
        backward(&x, &w, None, &y, &mut dy, lin, None, &mut dw, None, rows, fin, fout, Writes::ADD);
        backward(&x, &w, None, &y, &mut dy, lin, None, &mut dw, None, rows, fin, fout, Writes::ADD);
        for i in 0..fin {
            for o in 0..fout {
                let want: f32 = (0..rows).map(|r| 2.0 * x[r * fin + i] * dy0[r * fout + o]).sum();
                assert!((dw[i * fout + o] - want).abs() < 1e-5);
            }
        }
    }
}
