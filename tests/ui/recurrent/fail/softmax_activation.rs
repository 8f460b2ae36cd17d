// Proves: softmax as an activation of a recurrent cell is an error (it is not element-wise).
use modelc::prelude::*;

model! {
    pub struct Bad {
        input x: [5, 3];
        output y = LSTM(4, recurrent_activation = softmax)(x);
    }
}

fn main() {}
