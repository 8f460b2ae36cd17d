// Proves: Cropping1D's default (1, 1) on a two-step sequence leaves nothing: an error naming the steps.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input seq: [2, 8];
        output y = Cropping1D()(seq);
    }
}

fn main() {}
