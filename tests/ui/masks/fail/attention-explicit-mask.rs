// Keras' `Attention` takes `mask = [query_mask, value_mask]`; modelc reads the masks its operands
// carry (from `Masking` or `Embedding(mask_zero = true)`) and takes no explicit `mask`.
use modelc::prelude::*;

model! {
    pub struct M {
        input q: [5, 8];
        input m: [5];
        output y = Attention()([q, q], mask = [m, m]);
    }
}

fn main() {}
