// Proves: an upsampling factor of zero is an error at the factor.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input image: [4, 4, 1];
        output y = UpSampling2D((2, 0))(image);
    }
}

fn main() {}
