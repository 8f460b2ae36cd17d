// Proves: an initial state whose size is not the layer's units is an error at that state.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input x: [5, 3];
        input h: [3];
        output y = GRU(4)(x, initial_state = [h]);
    }
}

fn main() {}
