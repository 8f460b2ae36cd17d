// Proves: the generated code's own names cannot clash with the user's: two glob-imported modules that both
// define `data`, `batch`, `inputs`, ... leave `model!` and its generated API compiling.
mod a {
    pub fn data() {}
    pub fn batch() {}
    pub fn inputs() {}
    pub fn values() {}
}
mod b {
    pub fn data() {}
    pub fn batch() {}
    pub fn inputs() {}
    pub fn values() {}
}
#[allow(unused_imports)]
use a::*;
#[allow(unused_imports)]
use b::*;
use modelc::prelude::*;

model! {
    struct Net {
        input x: [4];
        output y = Dense(2)(x);
    }
}

#[test]
fn compiles_and_runs() {
    let x = modelc::ndarray::Array2::<f32>::zeros((3, 4));
    let mut net = Net::new(0);
    let mut out = net.predict(&NetInputs { x: x.view() }).unwrap();
    net.predict_into(&NetInputs { x: x.view() }, &mut out).unwrap();
    assert_eq!(out.y.shape(), [3, 2]);
}
