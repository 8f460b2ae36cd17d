// modelc attends over every axis between the batch and the features, not over a part of them.
use modelc::prelude::*;

model! {
    pub struct M {
        input x: [3, 5, 8];
        layer mha = MultiHeadAttention(2, 4, attention_axes = 2);
        output y = mha(x, x);
    }
}

fn main() {}
