// After a syntax error the model's items are still emitted (as stubs), so code using them adds no error.
use modelc::prelude::*;

model! {
    pub struct Typo {
        input x: [8];
        output y = Dense(1)(x)
    }
}

fn main() {
    let model = Typo::new(0);
    let _ = model.count_params();
}
