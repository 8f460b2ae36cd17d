// `Dense()` lacks its required `units`.
use modelc::prelude::*;

model! {
    pub struct M {
        input x: [8];
        output y = Dense()(x);
    }
}

fn main() {}
