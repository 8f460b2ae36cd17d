// Proves: an explicit output_padding that leaves a 'same' transposed convolution no output is an error
// naming the input and the formula.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input seq: [1, 4];
        output y = Conv1DTranspose(4, 2, strides = 2, padding = same, output_padding = 0)(seq);
    }
}

fn main() {}
