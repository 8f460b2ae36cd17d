// Proves: two `output` lines naming one tensor are rejected at the second output's name (each output needs its
// own loss gradient buffer), with a help showing how to give it its own layer.
use modelc::prelude::*;

model! {
    struct TwoHeads {
        input x: [8];
        let h = Dense(4, activation = sigmoid)(x);
        output p = h;
        output q = h;
    }
}

fn main() {}
