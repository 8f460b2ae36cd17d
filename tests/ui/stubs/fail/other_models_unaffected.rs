// An error in one model hides nothing else: the other model of the same invocation is fully generated and
// used by `main`, and so is the failed one's struct; the only error is the unknown tensor.
use modelc::ndarray::Array2;
use modelc::prelude::*;

model! {
    pub struct Good {
        input x: [4];
        output y = Dense(2)(x);
    }

    pub struct Bad {
        input x: [4];
        output y = Dense(2)(z);
    }
}

fn main() {
    let x = Array2::<f32>::zeros((1, 4));
    let mut good = Good::new(1);
    let out = good.predict(&GoodInputs { x: x.view() }).unwrap();
    assert_eq!(out.y.shape(), &[1, 2]);
    let mut bad = Bad::new(1);
    let _ = bad.predict(&BadInputs { x: x.view() });
}
