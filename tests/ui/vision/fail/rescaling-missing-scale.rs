// Proves: Rescaling without its scale is an error at the layer with an example.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input x: [4];
        output y = Rescaling(offset = 1.0)(x);
    }
}

fn main() {}
