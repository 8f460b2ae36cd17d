// Proves: Bidirectional without a layer is an error at the constructor.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input x: [5, 3];
        output y = Bidirectional(merge_mode = sum)(x);
    }
}

fn main() {}
