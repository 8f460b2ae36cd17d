// Proves: a keyword tensor argument given twice is an error at the second, with a note at the first.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input x: [5, 3];
        input h: [4];
        output y = GRU(4)(x, initial_state = [h], initial_state = [h]);
    }
}

fn main() {}
