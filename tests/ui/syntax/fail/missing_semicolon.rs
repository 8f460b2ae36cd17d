// A statement without its `;` is reported at the token that follows, and the model is otherwise checked.
use modelc::prelude::*;

model! {
    pub struct M {
        input x: [8];
        let h = Dense(8)(x)
        output y = Dense(1)(h);
    }
}

fn main() {}
