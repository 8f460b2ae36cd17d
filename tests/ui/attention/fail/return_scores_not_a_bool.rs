// `return_attention_scores` is a flag, not a number.
use modelc::prelude::*;

model! {
    pub struct M {
        input x: [5, 8];
        layer mha = MultiHeadAttention(2, 4);
        let (y, scores) = mha(x, x, return_attention_scores = 1);
        output out = y;
        output s = scores;
    }
}

fn main() {}
