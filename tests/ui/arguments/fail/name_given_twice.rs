// `name = "..."` given twice to one layer.
use modelc::prelude::*;

model! {
    pub struct M {
        input x: [8];
        output y = Dense(1, name = "head", name = "score")(x);
    }
}

fn main() {}
