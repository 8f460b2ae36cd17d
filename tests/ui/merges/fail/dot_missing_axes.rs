// Proves: `axes` is a required argument of `Dot` (as in Keras), reported at the constructor.
use modelc::prelude::*;

model! {
    pub struct Similarity {
        input query: [8];
        input key: [8];
        output score = Dot()([query, key]);
    }
}

fn main() {}
