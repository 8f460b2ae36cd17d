// Proves: a `depth_multiplier` below 1 on a separable convolution is an error at the value, saying it
// must be a positive integer.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input image: [8, 8, 3];
        output y = SeparableConv2D(16, 3, depth_multiplier = 0)(image);
    }
}

fn main() {}
