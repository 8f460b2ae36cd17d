// Proves: a non-zero dropout of a recurrent layer is an error at its value, suggesting a Dropout layer.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input x: [5, 3];
        output y = LSTM(4, dropout = 0.2)(x);
    }
}

fn main() {}
