// Proves: `Dot(axes = 1)` of (None, 8) and (None, 4) is an error naming both tensors, the contracted
// axes and their sizes, with a `Dense(8)` projection as the fix.
use modelc::prelude::*;

model! {
    pub struct Similarity {
        input query: [8];
        input key: [4];
        output score = Dot(axes = 1)([query, key]);
    }
}

fn main() {}
