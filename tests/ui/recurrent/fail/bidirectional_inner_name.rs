// Proves: a name on the layer inside Bidirectional is an error at the name (Keras names the two copies
// itself: forward_lstm, backward_lstm), rather than weight names that silently differ.
use modelc::prelude::*;

model! {
    pub struct Net {
        input x: [5, 3];
        output y = Bidirectional(LSTM(4, name = "enc"))(x);
    }
}

fn main() {}
