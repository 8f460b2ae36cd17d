// Proves: a literal given to a keyword that takes tensors (`initial_state = 0`) is an error at the value,
// naming the keyword and the layer.
use modelc::prelude::*;

model! {
    pub struct Net {
        input x: [5, 3];
        output y = LSTM(4)(x, initial_state = 0);
    }
}

fn main() {}
