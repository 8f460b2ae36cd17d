// A negative size is reported at the literal, minus sign included.
use modelc::prelude::*;

model! {
    pub struct M {
        input x: [8];
        output y = Dense(-4)(x);
    }
}

fn main() {}
