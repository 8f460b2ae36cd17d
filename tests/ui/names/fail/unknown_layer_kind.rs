// A misspelt layer kind gets a "did you mean".
use modelc::prelude::*;

model! {
    pub struct M {
        input x: [8];
        output y = Dens(1)(x);
    }
}

fn main() {}
