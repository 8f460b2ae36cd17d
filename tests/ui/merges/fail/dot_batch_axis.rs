// Proves: `Dot` cannot contract the batch axis (axis 0), as in Keras' `batch_dot`.
use modelc::prelude::*;

model! {
    pub struct Similarity {
        input query: [8];
        input key: [8];
        output score = Dot(axes = 0)([query, key]);
    }
}

fn main() {}
