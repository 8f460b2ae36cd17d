// Proves: binding fewer names than a multi-result call returns is an error at the names, listing the results.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input x: [5, 3];
        let (y, h) = LSTM(4, return_state = true)(x);
        output out = Concatenate()([y, h]);
    }
}

fn main() {}
