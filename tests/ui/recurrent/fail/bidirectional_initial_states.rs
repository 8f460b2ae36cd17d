// Proves: a bidirectional LSTM given two initial states (it takes four) is an error at the keyword.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input x: [5, 3];
        input h: [4];
        output y = Bidirectional(LSTM(4))(x, initial_state = [h, h]);
    }
}

fn main() {}
