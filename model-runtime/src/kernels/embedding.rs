//! Keras `Embedding(input_dim, output_dim)`: each token id selects a row of the `[input_dim, output_dim]`
//! table. Ids arrive as exact `f32` values (integer inputs are staged as `f32`) and are range-checked when
//! the inputs are staged (see `model::stage_inputs`), so an id outside the table never reaches a kernel;
//! should one anyway, its row is zero in forward and gets no gradient, rather than a panic.

/// The table row of token `id`, if the id is a whole number inside the table.
#[inline]
fn row(id: f32, vocab: usize) -> Option<usize> {
    (id >= 0.0 && id.fract() == 0.0 && (id as usize) < vocab).then_some(id as usize)
}

/// `y[t, :] = table[ids[t], :]` for every token `t`; `y` holds `ids.len() · dim` elements.
pub fn forward(ids: &[f32], table: &[f32], dim: usize, y: &mut [f32]) {
    if dim == 0 {
        return;
    }
    debug_assert_eq!(y.len(), ids.len() * dim);
    let vocab = table.len() / dim;
    for (&id, out) in ids.iter().zip(y.chunks_exact_mut(dim)) {
        match row(id, vocab) {
            Some(r) => out.copy_from_slice(&table[r * dim..(r + 1) * dim]),
            None => out.fill(0.0),
        }
    }
}

/// `dtable[ids[t], :] += dy[t, :]` for every token `t` (a repeated id accumulates).
pub fn backward(ids: &[f32], dy: &[f32], dim: usize, dtable: &mut [f32]) {
    if dim == 0 {
        return;
    }
    debug_assert_eq!(dy.len(), ids.len() * dim);
    let vocab = dtable.len() / dim;
    for (&id, g) in ids.iter().zip(dy.chunks_exact(dim)) {
        if let Some(r) = row(id, vocab) {
            dtable[r * dim..(r + 1) * dim].iter_mut().zip(g).for_each(|(d, &g)| *d += g);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_gathered_and_gradients_scattered_with_repeats_accumulating() {
        // A 4 × 2 table: row r is [r, 10 r].
        let table: Vec<f32> = (0..4).flat_map(|r| [r as f32, 10.0 * r as f32]).collect();
        let ids = [2.0, 0.0, 2.0];
        let mut y = [0.0; 6];
        forward(&ids, &table, 2, &mut y);
        assert_eq!(y, [2.0, 20.0, 0.0, 0.0, 2.0, 20.0]);
        let mut dt = [0.0; 8];
        backward(&ids, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, &mut dt);
        assert_eq!(dt, [3.0, 4.0, 0.0, 0.0, 6.0, 8.0, 0.0, 0.0]);
    }

    #[test]
    fn ids_outside_the_table_give_zero_rows_and_no_gradient_instead_of_panicking() {
        let table = [1.0; 6];
        let mut y = [9.0; 8];
        forward(&[3.0, -1.0, 0.5, f32::NAN], &table, 2, &mut y);
        assert_eq!(y, [0.0; 8]);
        let mut dt = [0.0; 6];
        backward(&[3.0, -1.0, 0.5, f32::NAN], &[1.0; 8], 2, &mut dt);
        assert_eq!(dt, [0.0; 6]);
    }
}
