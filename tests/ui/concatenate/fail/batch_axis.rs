// Concatenate cannot join along the batch axis.
use modelc::prelude::*;

model! {
    pub struct M {
        input a: [8];
        input b: [8];
        output y = Concatenate(axis = 0)([a, b]);
    }
}

fn main() {}
