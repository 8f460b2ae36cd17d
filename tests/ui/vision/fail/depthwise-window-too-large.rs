// Proves: a 'valid' depthwise window (dilated) larger than the image is an error at the layer, naming the
// window, the dilated window and the input's shape, and suggesting `padding = same`.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input image: [4, 4, 3];
        output y = DepthwiseConv2D(3, dilation_rate = 2)(image);
    }
}

fn main() {}
