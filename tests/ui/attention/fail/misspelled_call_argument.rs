// A call argument MultiHeadAttention does not take, with the one it probably means.
use modelc::prelude::*;

model! {
    pub struct M {
        input x: [5, 8];
        layer mha = MultiHeadAttention(2, 4);
        output y = mha(x, x, use_casual_mask = true);
    }
}

fn main() {}
