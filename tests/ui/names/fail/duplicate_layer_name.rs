// Two layers given the same explicit `name = "..."` (it names their weights).
use modelc::prelude::*;

model! {
    pub struct M {
        input x: [8];
        let h = Dense(8, name = "hidden")(x);
        output y = Dense(1, name = "hidden")(h);
    }
}

fn main() {}
