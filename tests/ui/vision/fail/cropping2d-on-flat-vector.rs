// Proves: cropping needs an image; on a vector the help says how to reshape it.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input x: [16];
        output y = Cropping2D(1)(x);
    }
}

fn main() {}
