// Proves: element-wise merges broadcast only dims that are equal or 1 (Keras' rule); (None, 3, 8) and
// (None, 5, 8) conflict on axis 1, reported at the `Maximum` call naming both tensors.
use modelc::prelude::*;

model! {
    pub struct Seqs {
        input a: [3, 8];
        input b: [5, 8];
        output y = Maximum()([a, b]);
    }
}

fn main() {}
