// Proves: a keyword argument the layer does not take is an error at the keyword, with the nearest one it takes.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input x: [5, 3];
        input h: [4];
        output y = LSTM(4)(x, initial_states = [h, h]);
    }
}

fn main() {}
