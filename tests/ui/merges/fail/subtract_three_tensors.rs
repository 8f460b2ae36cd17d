// Proves: `Subtract` takes exactly two tensors (as in Keras); three is an error at the call.
use modelc::prelude::*;

model! {
    pub struct Diff {
        input a: [4];
        input b: [4];
        input c: [4];
        output y = Subtract()([a, b, c]);
    }
}

fn main() {}
