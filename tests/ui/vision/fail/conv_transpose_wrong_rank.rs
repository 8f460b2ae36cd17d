// Proves: Conv2DTranspose on a sequence is an error at the layer that points to Conv1DTranspose.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input seq: [10, 4];
        output y = Conv2DTranspose(4, 3, strides = 2)(seq);
    }
}

fn main() {}
