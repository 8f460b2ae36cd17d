// The model's dtype policy (`#[dtype_policy = "..."]`) is "float32" or "mixed_bfloat16": another is an
// error at the value, with the fix.
use modelc::prelude::*;

model! {
    #[dtype_policy = "mixed_float16"]
    pub struct M {
        input x: [4];
        output y = Dense(2)(x);
    }
}

fn main() {}
