//! Compile cost: `expand` on generated models of 50 and 500 Dense layers, as a chain and as a DAG (each
//! layer reads the previous one and a skip from four layers back, merged by Concatenate), plus the size
//! of the generated code. Targets: under 20 ms for 50 layers, under 300 ms for 500.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use proc_macro2::TokenStream;
use std::fmt::Write;
use std::hint::black_box;
use std::str::FromStr;

/// `input x: [16]; let h0 = Dense(16)(x); let h1 = Dense(16)(h0); ...; output y = Dense(1)(h_last);`
fn chain(layers: usize) -> String {
    let mut s = String::from("pub struct Chain {\n input x: [16];\n let h0 = Dense(16, activation = relu)(x);\n");
    for i in 1..layers {
        writeln!(s, " let h{i} = Dense(16, activation = relu)(h{});", i - 1).unwrap();
    }
    writeln!(s, " output y = Dense(1)(h{});\n}}", layers - 1).unwrap();
    s
}

/// Every fourth layer concatenates the previous output with a skip from four layers back.
fn dag(layers: usize) -> String {
    let mut s = String::from("pub struct Dag {\n input x: [16];\n let h0 = Dense(16, activation = relu)(x);\n");
    for i in 1..layers {
        if i % 4 == 0 && i >= 4 {
            writeln!(s, " let h{i} = Dense(16, activation = relu)(Concatenate()([h{}, h{}]));", i - 1, i - 4).unwrap();
        } else {
            writeln!(s, " let h{i} = Dense(16, activation = relu)(h{});", i - 1).unwrap();
        }
    }
    writeln!(s, " output y = Dense(1)(h{});\n}}", layers - 1).unwrap();
    s
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("expand");
    group.sample_size(10);
    for (shape, make) in [("chain", chain as fn(usize) -> String), ("dag", dag)] {
        for n in [50usize, 500] {
            let tokens = TokenStream::from_str(&make(n)).unwrap();
            let out = model_compiler::expand(tokens.clone());
            let (_, diags) = model_compiler::compile(tokens.clone());
            assert!(diags.is_empty(), "{shape} {n}: {:?}", diags.items().first().map(|d| d.message.clone()));
            println!("{shape} of {n} Dense layers: generated code {} bytes", out.to_string().len());
            group.bench_with_input(BenchmarkId::new(shape, n), &tokens, |b, t| b.iter(|| model_compiler::expand(black_box(t.clone()))));
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
