//! Weight files: a save/load round trip with Keras names, every mismatch reported in one error, truncated and
//! hostile files rejected without panic or unbounded allocation, and PyTorch-style names mapped. Hostile
//! files in bulk: `weights_hostile.rs`; saves killed midway or racing: `weights_crash.rs`.

use std::path::{Path, PathBuf};

use modelc::init::Rng;
use modelc::ndarray::Array2;
use modelc::prelude::*;

model! {
    struct Net {
        input x: [4];
        let h = Dense(3, activation = relu)(x);
        output y = Dense(2)(h);
    }
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("modelc-weights-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A safetensors file from `(name, shape, values)`, written by hand.
fn write_safetensors(path: &Path, tensors: &[(&str, Vec<usize>, Vec<f32>)]) {
    let mut header = String::from("{");
    let mut offset = 0;
    for (i, (name, shape, values)) in tensors.iter().enumerate() {
        let dims: Vec<String> = shape.iter().map(ToString::to_string).collect();
        let end = offset + values.len() * 4;
        header.push_str(&format!(
            "{}\"{name}\":{{\"dtype\":\"F32\",\"shape\":[{}],\"data_offsets\":[{offset},{end}]}}",
            if i > 0 { "," } else { "" },
            dims.join(",")
        ));
        offset = end;
    }
    header.push('}');
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    for (_, _, values) in tensors {
        for v in values {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn save_then_load_round_trips_weights_and_predictions() {
    let path = temp("round.safetensors");
    let mut a = Net::new(1);
    a.save(&path).unwrap();
    let mut b = Net::new(2);
    assert_ne!(a.params(), b.params());
    b.load(&path).unwrap();
    assert_eq!(a.params(), b.params());
    let mut rng = Rng::new(3);
    let x = Array2::from_shape_fn((5, 4), |_| rng.uniform(-1.0, 1.0));
    assert_eq!(a.predict(&NetInputs { x: x.view() }).unwrap(), b.predict(&NetInputs { x: x.view() }).unwrap());
    let tensors = modelc::io::read_tensors(&path).unwrap();
    assert_eq!(tensors.keys().collect::<Vec<_>>(), ["dense/bias", "dense/kernel", "dense_1/bias", "dense_1/kernel"]);
    assert_eq!(tensors["dense/kernel"].shape(), [4, 3], "Keras layout [in, out]");
}

#[test]
fn saves_of_one_model_are_identical_bytes_in_the_reference_layout() {
    let (p1, p2) = (temp("same-1.safetensors"), temp("same-2.safetensors"));
    let m = Net::new(5);
    m.save(&p1).unwrap();
    m.save(&p2).unwrap();
    let bytes = std::fs::read(&p1).unwrap();
    assert_eq!(bytes, std::fs::read(&p2).unwrap());
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert_eq!(n % 8, 0, "the data starts 8-byte aligned");
    let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
    assert!(
        header.starts_with(
            r#"{"__metadata__":{"format":"modelc","model":"Net"},"dense/kernel":{"dtype":"F32","shape":[4,3],"data_offsets":[0,48]},"#
        ),
        "{header}"
    );
    assert_eq!(bytes.len(), 8 + n + 4 * m.params().len(), "exactly covered: no trailing bytes");
}

#[test]
fn a_file_cut_in_half_is_a_clear_error_and_changes_nothing() {
    let path = temp("half.safetensors");
    Net::new(1).save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let mut m = Net::new(7);
    let before = m.params().to_vec();
    let err = m.load(&path).unwrap_err().to_string();
    assert!(err.contains("truncated"), "{err}");
    assert_eq!(m.params(), &before[..]);
}

#[test]
fn hostile_headers_are_rejected_without_allocating_what_they_claim() {
    let path = temp("hostile.safetensors");
    let mut m = Net::new(1);
    // A header length of 2^63 bytes.
    let mut lying = (1u64 << 63).to_le_bytes().to_vec();
    lying.extend_from_slice(b"{}");
    std::fs::write(&path, &lying).unwrap();
    assert!(m.load(&path).unwrap_err().to_string().contains("header claims"));
    // A tensor whose shape claims 2^62 elements in an 8-byte data section.
    let header = br#"{"dense/kernel":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,8]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&[0; 8]);
    std::fs::write(&path, &bytes).unwrap();
    assert!(m.load(&path).is_err());
    // Not a safetensors file at all.
    std::fs::write(&path, b"\x05\x00\x00\x00\x00\x00\x00\x00hello").unwrap();
    assert!(m.load(&path).unwrap_err().to_string().contains("JSON"));
}

#[test]
fn every_mismatch_is_reported_in_one_error() {
    let path = temp("mismatch.safetensors");
    write_safetensors(
        &path,
        &[
            ("dense/kernel", vec![3, 4], vec![0.0; 12]),
            ("dense/bias", vec![3], vec![0.0; 3]),
            ("dense_1/kernel", vec![3, 2], vec![0.0; 6]),
            ("dense_9/bias", vec![2], vec![0.0; 2]),
        ],
    );
    let err = Net::new(1).load(&path).unwrap_err().to_string();
    for part in ["dense/kernel", "[3, 4]", "expected [4, 3]", "dense_9/bias", "missing parameter `dense_1/bias`"] {
        assert!(err.contains(part), "`{part}` not in: {err}");
    }
}

#[test]
fn pytorch_names_and_layouts_load_through_a_mapping() {
    let path = temp("torch.safetensors");
    // nn.Linear weights are [out, in].
    let w1: Vec<f32> = (0..12).map(|v| v as f32).collect();
    write_safetensors(
        &path,
        &[
            ("fc1.weight", vec![3, 4], w1.clone()),
            ("fc1.bias", vec![3], vec![1.0, 2.0, 3.0]),
            ("fc2.weight", vec![2, 3], vec![0.5; 6]),
            ("fc2.bias", vec![2], vec![-1.0, 1.0]),
        ],
    );
    let mut m = Net::new(1);
    modelc::io::load_with(&mut m, &path, |name| {
        let (layer, kind) = name.split_once('.')?;
        let target = match layer {
            "fc1" => "dense",
            "fc2" => "dense_1",
            _ => return None,
        };
        Some(if kind == "weight" { (format!("{target}/kernel"), true) } else { (format!("{target}/bias"), false) })
    })
    .unwrap();
    let k = m.param("dense/kernel").unwrap();
    assert_eq!(k.shape(), [4, 3]);
    assert_eq!(k[[1, 2]], w1[2 * 4 + 1], "kernel[i, j] = weight[j, i]");
    assert_eq!(m.param("dense_1/bias").unwrap().as_slice().unwrap(), [-1.0, 1.0]);
}
