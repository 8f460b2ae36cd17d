// Proves: LayerNormalization over non-neighbouring axes is rejected with a fix (name neighbouring axes).
use modelc::prelude::*;

model! {
    pub struct Bad {
        input x: [4, 5, 6];
        output y = LayerNormalization(axis = (1, 3))(x);
    }
}

fn main() {}
