// modelc computes in float32 only: any other dtype or dtype policy is an error with the fix.
use modelc::prelude::*;

model! {
    pub struct M {
        input x: [4];
        output y = Dense(2, dtype = "mixed_float16")(x);
    }
}

fn main() {}
