// An argument given both by position and by keyword.
use modelc::prelude::*;

model! {
    pub struct M {
        input x: [8];
        output y = Dense(8, units = 16)(x);
    }
}

fn main() {}
