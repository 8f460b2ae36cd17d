// Proves: an interpolation Keras knows but modelc does not (bicubic) says which ones work.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input image: [4, 4, 1];
        output y = UpSampling2D(interpolation = bicubic)(image);
    }
}

fn main() {}
