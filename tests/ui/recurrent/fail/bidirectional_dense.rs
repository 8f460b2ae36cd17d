// Proves: Bidirectional around a layer that is not recurrent is an error at that layer.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input x: [5, 3];
        output y = Bidirectional(Dense(4))(x);
    }
}

fn main() {}
