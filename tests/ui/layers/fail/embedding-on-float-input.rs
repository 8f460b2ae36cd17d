// Proves: Embedding needs integer token ids: on a float input the error blames the operand and says to declare it `as i32`.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input tokens: [12];
        output y = Embedding(100, 8)(tokens);
    }
}

fn main() {}
