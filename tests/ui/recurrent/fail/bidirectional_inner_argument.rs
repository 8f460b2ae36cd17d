// Proves: a mistake in the wrapped layer's arguments is reported at it.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input x: [5, 3];
        output y = Bidirectional(GRU(4, return_sequence = true))(x);
    }
}

fn main() {}
