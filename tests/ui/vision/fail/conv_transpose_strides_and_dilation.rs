// Proves: a stride and a dilation both above 1 are rejected, as Keras does.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input image: [8, 8, 3];
        output y = Conv2DTranspose(4, 3, strides = 2, dilation_rate = 2)(image);
    }
}

fn main() {}
