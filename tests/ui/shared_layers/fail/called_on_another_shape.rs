// Proves: a shared layer (one set of weights) called on (None, 8) and then on (None, 4) is an error at the
// second call naming both tensors and shapes, with a note at the first call.
use modelc::prelude::*;

model! {
    pub struct Twins {
        input a: [8];
        input b: [4];
        layer enc = Dense(16, activation = relu);
        let x = enc(a);
        let y = enc(b);
        output z = Concatenate()([x, y]);
    }
}

fn main() {}
