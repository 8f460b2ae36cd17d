// Each value needs its key: key and value of MultiHeadAttention have the same positions.
use modelc::prelude::*;

model! {
    pub struct M {
        input q: [5, 8];
        input v: [7, 8];
        input k: [6, 8];
        layer mha = MultiHeadAttention(2, 4);
        output y = mha(q, v, k);
    }
}

fn main() {}
