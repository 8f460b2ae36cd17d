// Proves: UpSampling1D on an image points to UpSampling2D.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input image: [4, 4, 1];
        output y = UpSampling1D(2)(image);
    }
}

fn main() {}
