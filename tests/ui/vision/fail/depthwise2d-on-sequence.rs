// Proves: DepthwiseConv2D on a sequence is an error at the layer, naming the rank and suggesting
// DepthwiseConv1D or a reshape into an image.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input seq: [10, 4];
        output y = DepthwiseConv2D(3)(seq);
    }
}

fn main() {}
