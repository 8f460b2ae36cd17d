// Proves: an output_padding not smaller than the stride is an error at the output_padding, naming both and
// the largest one allowed.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input image: [4, 4, 8];
        output y = Conv2DTranspose(4, 3, strides = (2, 3), padding = same, output_padding = (2, 1))(image);
    }
}

fn main() {}
