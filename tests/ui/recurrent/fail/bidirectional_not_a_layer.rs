// Proves: Bidirectional given something other than a layer is an error at it.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input x: [5, 3];
        output y = Bidirectional(4)(x);
    }
}

fn main() {}
