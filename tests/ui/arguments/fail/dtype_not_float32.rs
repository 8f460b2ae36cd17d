// A layer computes in float32 or in its model's policy: any other dtype is an error with the fix.
use modelc::prelude::*;

model! {
    pub struct M {
        input x: [4];
        output y = Dense(2, dtype = "mixed_float16")(x);
    }
}

fn main() {}
