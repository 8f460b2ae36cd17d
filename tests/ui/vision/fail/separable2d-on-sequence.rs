// Proves: SeparableConv2D on a sequence is an error at the layer, naming the rank and suggesting
// SeparableConv1D or a reshape into an image.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input seq: [10, 4];
        output y = SeparableConv2D(8, 3)(seq);
    }
}

fn main() {}
