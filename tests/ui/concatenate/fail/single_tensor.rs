// A merge of one tensor: Concatenate needs at least two.
use modelc::prelude::*;

model! {
    pub struct M {
        input a: [8];
        output y = Concatenate()([a]);
    }
}

fn main() {}
