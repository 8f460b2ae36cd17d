// Proves: a stateful recurrent layer is an error, pointing to return_state and initial_state.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input x: [5, 3];
        output y = SimpleRNN(4, stateful = true)(x);
    }
}

fn main() {}
