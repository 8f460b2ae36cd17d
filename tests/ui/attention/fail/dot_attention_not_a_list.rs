// Keras calls Attention on one list, not on several tensors.
use modelc::prelude::*;

model! {
    pub struct M {
        input q: [5, 8];
        input v: [7, 8];
        output y = Attention()(q, v);
    }
}

fn main() {}
