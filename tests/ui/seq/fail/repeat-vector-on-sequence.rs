// Proves: RepeatVector on a sequence is an error at the layer, naming the tensor and its shape.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input seq: [10, 4];
        output y = RepeatVector(3)(seq);
    }
}

fn main() {}
