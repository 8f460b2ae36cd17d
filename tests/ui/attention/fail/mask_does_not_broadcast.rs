// An attention mask is (query positions, value positions), either may be 1: (5, 6) does not fit 5 × 7.
use modelc::prelude::*;

model! {
    pub struct M {
        input q: [5, 8];
        input v: [7, 8];
        input m: [5, 6];
        layer mha = MultiHeadAttention(num_heads = 2, key_dim = 4);
        output y = mha(q, v, attention_mask = m);
    }
}

fn main() {}
