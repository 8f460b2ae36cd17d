// Proves: an LSTM given one initial state (it takes h and c) is an error at the keyword.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input x: [5, 3];
        input h: [4];
        output y = LSTM(4)(x, initial_state = [h]);
    }
}

fn main() {}
