// Proves: with the default stride of 1, any output_padding but 0 is an error that says to leave it out.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input seq: [10, 4];
        output y = Conv1DTranspose(4, 3, output_padding = 1)(seq);
    }
}

fn main() {}
