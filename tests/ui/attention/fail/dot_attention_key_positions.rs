// The key and the value of Attention come in pairs: the same positions.
use modelc::prelude::*;

model! {
    pub struct M {
        input q: [5, 8];
        input v: [7, 3];
        input k: [6, 8];
        output y = Attention()([q, v, k]);
    }
}

fn main() {}
