// Proves: strides > 1 together with dilation_rate > 1 is rejected at the Conv2D constructor, as in Keras.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input image: [8, 8, 1];
        output y = Conv2D(2, 3, strides = 2, dilation_rate = 2)(image);
    }
}

fn main() {}
