// Proves: BatchNormalization cannot normalize over the batch axis; the error names the tensor, its shape and the valid axes.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input x: [4, 6];
        output y = BatchNormalization(axis = 0)(x);
    }
}

fn main() {}
