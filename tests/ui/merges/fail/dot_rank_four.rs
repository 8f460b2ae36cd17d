// Proves: `Dot` supports per-sample vectors and matrices; an image-shaped operand is an error
// suggesting to flatten or pool it first.
use modelc::prelude::*;

model! {
    pub struct Similarity {
        input image: [4, 4, 8];
        input key: [8];
        output score = Dot(axes = -1)([image, key]);
    }
}

fn main() {}
