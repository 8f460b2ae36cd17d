// Proves: a recurrent layer on a tensor that is not a sequence is an error at the operand, with the Reshape that fixes it.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input x: [8];
        output y = LSTM(4)(x);
    }
}

fn main() {}
