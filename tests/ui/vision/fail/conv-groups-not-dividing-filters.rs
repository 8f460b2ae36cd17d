// Proves: `groups` that does not divide `filters` is an error at the conv with a filter count that works.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input seq: [10, 4];
        output y = Conv1D(5, 3, groups = 2)(seq);
    }
}

fn main() {}
