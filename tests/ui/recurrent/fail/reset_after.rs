// Proves: GRU with reset_after = false is an error at the value.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input x: [5, 3];
        output y = GRU(4, reset_after = false)(x);
    }
}

fn main() {}
