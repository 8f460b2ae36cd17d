// Calling a layer instance that was never declared with `layer`.
use modelc::prelude::*;

model! {
    pub struct M {
        input x: [8];
        output y = encoder(x);
    }
}

fn main() {}
